//! Pieces shared by the `ai.onnx.ml` operators: the inference wrapper turning a [`TypedOp`] into
//! an ONNX-loadable op, attribute helpers and the score post-transforms of onnxruntime.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;

/// The `ai.onnx.ml` domain name.
pub const ML_DOMAIN: &str = "ai.onnx.ml";

/// The version of the `ai.onnx.ml` operator set the model imports (1 when it imports none).
pub fn ml_opset(ctx: &ParsingContext) -> i64 {
    ctx.model.opset_import.iter().find(|import| import.domain == ML_DOMAIN).map(|import| import.version).unwrap_or(1)
}

/// An `ai.onnx.ml` operator implemented as a tract [`TypedOp`].
///
/// The inference rules are derived from [`TypedOp::output_facts`]: once the datum types and
/// shapes of all inputs are known, the output facts are computed by the typed op itself, so the
/// inference model and the typed model agree by construction. [`MlOp::static_rules`] may add the
/// facts known before that (output types fixed by attributes, ranks...), which helps the
/// analysis of the rest of the graph when input shapes are only partially known.
pub trait MlOp: TypedOp + Clone {
    /// How many outputs the operator has.
    fn output_count(&self) -> usize {
        1
    }

    /// How many inputs the operator expects (`None` for variadic operators).
    fn input_count(&self) -> Option<usize> {
        Some(1)
    }

    /// Facts known from the attributes alone.
    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        _s: &mut Solver<'r>,
        _inputs: &'p [TensorProxy],
        _outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        Ok(())
    }
}

/// The facts every classifier fixes from its attributes: output 0 holds one label per row
/// (of `label_type`), output 1 the `[rows, classes]` f32 scores.
pub fn classifier_rules<'r, 'p: 'r>(s: &mut Solver<'r>, outputs: &'p [TensorProxy], label_type: DatumType) -> InferenceResult {
    s.equals(&outputs[0].datum_type, label_type)?;
    s.equals(&outputs[1].datum_type, f32::datum_type())?;
    s.equals(&outputs[0].rank, 1)?;
    s.equals(&outputs[1].rank, 2)
}

/// Wraps an [`MlOp`] so the ONNX loader can use it (see [`MlOp`] for the inference rules).
pub fn wrap<O: MlOp>(op: O) -> Box<dyn InferenceOp> {
    expand(MlExpansion(op))
}

/// The [`Expansion`] adapter behind [`wrap`]; it wires the typed op as is.
#[derive(Debug, Clone)]
struct MlExpansion<O: MlOp>(O);

impl<O: MlOp> Expansion for MlExpansion<O> {
    fn name(&self) -> StaticName {
        self.0.name()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.0.info()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.0.output_count())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.0.clone(), inputs)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(&'s self, s: &mut Solver<'r>, inputs: &'p [TensorProxy], outputs: &'p [TensorProxy]) -> InferenceResult {
        if let Some(n) = self.0.input_count() {
            check_input_arity(inputs, n)?;
        }
        check_output_arity(outputs, self.0.output_count())?;
        self.0.static_rules(s, inputs, outputs)?;
        let op = &self.0;
        s.given_all(inputs.iter().map(|i| &i.datum_type), move |s, dts| {
            s.given_all(inputs.iter().map(|i| &i.shape), move |s, shapes| {
                let facts: TVec<TypedFact> =
                    dts.iter().zip(shapes.iter()).map(|(dt, shape)| TypedFact::dt_shape(*dt, shape.clone())).collect();
                let refs: TVec<&TypedFact> = facts.iter().collect();
                let out = op.output_facts(&refs)?;
                for (proxy, fact) in outputs.iter().zip(out.iter()) {
                    s.equals(&proxy.datum_type, fact.datum_type)?;
                    s.equals(&proxy.shape, fact.shape.to_tvec())?;
                }
                Ok(())
            })
        })
    }
}

/// Reads an optional list-of-floats attribute, falling back to its `<name>_as_tensor` twin
/// (double precision) when the float list is absent. Both present is an error.
pub fn floats_or_tensor(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Option<Vec<f64>>> {
    let floats: Option<Vec<f32>> = node.get_attr_opt_vec(name)?;
    let tensor_name = format!("{name}_as_tensor");
    let tensor = tensor_attr(ctx, node, &tensor_name)?;
    match (floats, tensor) {
        (Some(_), Some(_)) => {
            bail!("{}: attributes '{name}' and '{tensor_name}' are mutually exclusive", describe(node))
        }
        (Some(f), None) => Ok(Some(f.into_iter().map(|x| x as f64).collect())),
        (None, Some(t)) => Ok(Some(tensor_to_f64(&t).with_context(|| format!("{}: attribute '{tensor_name}'", describe(node)))?)),
        (None, None) => Ok(None),
    }
}

/// Reads an optional tensor attribute.
pub fn tensor_attr(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Option<Tensor>> {
    match node.get_attr_opt::<&TensorProto>(name)? {
        Some(proto) => Ok(Some(ctx.load_tensor(proto).with_context(|| format!("{}: loading tensor attribute '{name}'", describe(node)))?)),
        None => Ok(None),
    }
}

/// The elements of a numeric tensor, as `f64`.
pub fn tensor_to_f64(t: &Tensor) -> TractResult<Vec<f64>> {
    ensure!(t.datum_type().is_number(), "expected a numeric tensor, got {:?}", t.datum_type());
    let t = t.cast_to::<f64>()?;
    Ok(t.try_as_plain_ram()?.as_slice::<f64>()?.to_vec())
}

/// "node `name` (OpType)", for error messages.
pub fn describe(node: &NodeProto) -> String {
    format!("node '{}' ({})", node.name, node.op_type)
}

/// Builds a tensor of shape `shape` from `data` (any datum type, strings included).
pub fn tensor_from_vec<T: Datum>(shape: &[usize], data: Vec<T>) -> TractResult<Tensor> {
    Ok(tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(shape), data)?.into_tensor())
}

/// The type an input of type `dt` is processed as: tract-onnx types the int64 outputs of ONNX
/// `Cast` nodes as `TDim`, which the ML operators treat as int64.
pub fn effective_type(dt: DatumType) -> DatumType {
    if dt == DatumType::TDim {
        DatumType::I64
    } else {
        dt
    }
}

/// The tensor with `TDim` elements converted to int64 (see [`effective_type`]), else as is.
pub fn as_plain_int(t: &Tensor) -> TractResult<Cow<'_, Tensor>> {
    if t.datum_type() == DatumType::TDim {
        t.cast_to::<i64>()
    } else {
        Ok(Cow::Borrowed(t))
    }
}

/// Checks that `dt` is one of the numeric input types the ML operators accept
/// (float, double, int32, int64) and names the operator in the error.
pub fn ensure_numeric_input(op: &str, dt: DatumType) -> TractResult<()> {
    ensure!(
        matches!(effective_type(dt), DatumType::F32 | DatumType::F64 | DatumType::I32 | DatumType::I64),
        "{op}: input type {dt:?} is not supported (expected float, double, int32 or int64)"
    );
    Ok(())
}

/// The input viewed as `f32` values (cast when needed), with its shape.
pub fn input_as_f32(t: &Tensor) -> TractResult<Cow<'_, Tensor>> {
    match as_plain_int(t)? {
        Cow::Borrowed(t) => t.cast_to::<f32>(),
        Cow::Owned(t) => Ok(Cow::Owned(t.cast_to::<f32>()?.into_owned())),
    }
}

/// `(rows, features)` of a rank 1 (one row) or rank 2 input, as the ML operators read them.
pub fn rows_and_features(op: &str, shape: &[usize]) -> TractResult<(usize, usize)> {
    match shape.len() {
        1 => Ok((1, shape[0])),
        2 => Ok((shape[0], shape[1])),
        r => bail!("{op}: expected an input of rank 1 or 2, got rank {r} (shape {shape:?})"),
    }
}

/// `(rows, features)` as dimensions, for `output_facts`.
pub fn rows_and_features_dims(op: &str, fact: &TypedFact) -> TractResult<(TDim, TDim)> {
    match fact.rank() {
        1 => Ok((1.to_dim(), fact.shape[0].clone())),
        2 => Ok((fact.shape[0].clone(), fact.shape[1].clone())),
        r => bail!("{op}: expected an input of rank 1 or 2, got rank {r} ({fact:?})"),
    }
}

/// The score transforms of the ML operators (`post_transform` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostTransform {
    /// Scores are left as they are.
    None,
    /// `1 / (1 + exp(-x))` on each score.
    Logistic,
    /// Softmax over the scores of a row.
    Softmax,
    /// Softmax that leaves (near) zero scores out of the exponentials.
    SoftmaxZero,
    /// `sqrt(2) * erfinv(2x - 1)` on each score.
    Probit,
}

impl PostTransform {
    /// Parses the attribute value (`NONE` when absent).
    pub fn parse(node: &NodeProto) -> TractResult<PostTransform> {
        let s: Option<String> = node.get_attr_opt("post_transform")?;
        Ok(match s.as_deref() {
            None | Some("NONE") => PostTransform::None,
            Some("LOGISTIC") => PostTransform::Logistic,
            Some("SOFTMAX") => PostTransform::Softmax,
            Some("SOFTMAX_ZERO") => PostTransform::SoftmaxZero,
            Some("PROBIT") => PostTransform::Probit,
            Some(other) => {
                bail!("{}: invalid post_transform '{other}' (expected NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO or PROBIT)", describe(node))
            }
        })
    }

    /// Applies the transform to the scores of one row holding two scores or more
    /// (onnxruntime's `write_scores` for that case).
    pub fn apply_row(self, scores: &mut [f32]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => scores.iter_mut().for_each(|x| *x = logistic(*x)),
            PostTransform::Probit => scores.iter_mut().for_each(|x| *x = probit(*x)),
            PostTransform::Softmax => softmax(scores),
            PostTransform::SoftmaxZero => softmax_zero(scores),
        }
    }
}

/// Numerically stable logistic function, as onnxruntime computes it.
pub fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

/// Approximate inverse error function used by onnxruntime's probit.
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

/// `sqrt(2) * erfinv(2x - 1)`.
pub fn probit(x: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * x - 1.0)
}

/// In-place softmax.
pub fn softmax(values: &mut [f32]) {
    let max = values.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// In-place softmax skipping zero scores (they stay zero).
pub fn softmax_zero(values: &mut [f32]) {
    let max = values.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Class labels of a classifier: `int64` or `string`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClassLabels {
    /// `classlabels_ints` / `classlabels_int64s`.
    Ints(Vec<i64>),
    /// `classlabels_strings`.
    Strings(Vec<String>),
}

impl ClassLabels {
    /// Reads the labels from `int_attr` or `classlabels_strings` (exactly one must be non-empty).
    pub fn parse(node: &NodeProto, int_attr: &str) -> TractResult<ClassLabels> {
        let ints: Vec<i64> = node.get_attr_opt_vec(int_attr)?.unwrap_or_default();
        let strings: Vec<String> = node.get_attr_opt_vec("classlabels_strings")?.unwrap_or_default();
        match (ints.is_empty(), strings.is_empty()) {
            (false, true) => Ok(ClassLabels::Ints(ints)),
            (true, false) => Ok(ClassLabels::Strings(strings)),
            (true, true) => {
                bail!("{}: one of '{int_attr}' and 'classlabels_strings' is required", describe(node))
            }
            (false, false) => bail!("{}: only one of '{int_attr}' and 'classlabels_strings' may be set", describe(node)),
        }
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        match self {
            ClassLabels::Ints(v) => v.len(),
            ClassLabels::Strings(v) => v.len(),
        }
    }

    /// Whether there is no label at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Datum type of the label output.
    pub fn datum_type(&self) -> DatumType {
        match self {
            ClassLabels::Ints(_) => DatumType::I64,
            ClassLabels::Strings(_) => DatumType::String,
        }
    }

    /// Builds the label output from per-row choices.
    pub fn output(&self, rows: &[LabelChoice]) -> TractResult<Tensor> {
        match self {
            ClassLabels::Ints(labels) => {
                let v = rows
                    .iter()
                    .map(|c| match *c {
                        LabelChoice::Index(ix) => {
                            labels.get(ix).copied().with_context(|| format!("class index {ix} out of range ({} labels)", labels.len()))
                        }
                        LabelChoice::Raw(r) => Ok(r),
                    })
                    .collect::<TractResult<Vec<i64>>>()?;
                tensor_from_vec(&[rows.len()], v)
            }
            ClassLabels::Strings(labels) => {
                let v = rows
                    .iter()
                    .map(|c| match *c {
                        LabelChoice::Index(ix) => {
                            labels.get(ix).cloned().with_context(|| format!("class index {ix} out of range ({} labels)", labels.len()))
                        }
                        LabelChoice::Raw(r) => Ok(r.to_string()),
                    })
                    .collect::<TractResult<Vec<String>>>()?;
                tensor_from_vec(&[rows.len()], v)
            }
        }
    }
}

/// The label picked for one row: an index in the labels, or (onnxruntime's binary fallbacks) a
/// raw value written as is (`1`/`0` for int64 labels, `"1"`/`"0"` for string labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelChoice {
    /// Index into the class labels.
    Index(usize),
    /// Literal value.
    Raw(i64),
}

/// Index of the first maximum.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (ix, v) in values.iter().enumerate().skip(1) {
        if *v > values[best] {
            best = ix;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_is_symmetric_and_stable() {
        assert!((logistic(0.0) - 0.5).abs() < 1e-7);
        assert!((logistic(2.0) + logistic(-2.0) - 1.0).abs() < 1e-6);
        assert_eq!(logistic(1000.0), 1.0);
        assert_eq!(logistic(-1000.0), 0.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut v = [1.0f32, 2.0, 3.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[2] > v[1] && v[1] > v[0]);
    }

    #[test]
    fn softmax_zero_keeps_zeros() {
        let mut v = [0.0f32, 1.0, 2.0];
        softmax_zero(&mut v);
        assert_eq!(v[0], 0.0);
        assert!((v[1] + v[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn probit_of_half_is_zero() {
        assert!(probit(0.5).abs() < 1e-6);
        assert!(probit(0.9) > 1.2 && probit(0.9) < 1.35);
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[5.0]), 0);
    }

    #[test]
    fn label_output_maps_indices_and_raw_values() {
        let labels = ClassLabels::Strings(vec!["a".into(), "b".into()]);
        let t = labels.output(&[LabelChoice::Index(1), LabelChoice::Raw(0)]).unwrap();
        let v = t.try_as_plain_ram().unwrap().as_slice::<String>().unwrap().to_vec();
        assert_eq!(v, vec!["b".to_string(), "0".to_string()]);
        assert!(ClassLabels::Ints(vec![3]).output(&[LabelChoice::Index(2)]).is_err());
    }
}
