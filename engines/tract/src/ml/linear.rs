//! `LinearClassifier` and `LinearRegressor`: `scores = X · coefficientsᵀ + intercepts`.
//!
//! Both replace tract-onnx's implementations, which differ from onnxruntime on the binary
//! single-model classifier layout (onnxruntime writes `[1 - p, p]` with `p` the score after
//! LOGISTIC, or the raw score otherwise) and on single-target regressors (onnxruntime applies no
//! post-transform but PROBIT to one score).

use super::common::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// `scores[n, t] = Σ_f x[n, f] · coefficients[t * F + f] + intercepts[t]`.
fn linear_scores(x: &[f32], rows: usize, features: usize, coefficients: &[f32], intercepts: Option<&[f32]>) -> Vec<f32> {
    let targets = coefficients.len() / features.max(1);
    let mut scores = vec![0f32; rows * targets];
    for r in 0..rows {
        let xr = &x[r * features..(r + 1) * features];
        for t in 0..targets {
            let w = &coefficients[t * features..(t + 1) * features];
            let dot: f32 = xr.iter().zip(w).map(|(a, b)| a * b).sum();
            scores[r * targets + t] = dot + intercepts.map(|i| i[t]).unwrap_or(0.0);
        }
    }
    scores
}

/// The `ai.onnx.ml` `LinearClassifier` operator (outputs: labels `[N]`, scores `[N, C]`).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearClassifier {
    /// `[targets × features]`, row-major.
    pub coefficients: Vec<f32>,
    /// One per target (empty: no intercept, targets deduced from the number of features).
    pub intercepts: Vec<f32>,
    /// Class labels.
    pub labels: ClassLabels,
    /// Score transform.
    pub post_transform: PostTransform,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for LinearClassifier {}

/// Builds a [`LinearClassifier`] from its ONNX node.
pub fn build_classifier(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let coefficients: Vec<f32> = node.get_attr_opt_vec("coefficients")?.unwrap_or_default();
    ensure!(!coefficients.is_empty(), "{}: attribute 'coefficients' is missing", describe(node));
    let intercepts: Vec<f32> = node.get_attr_opt_vec("intercepts")?.unwrap_or_default();
    if !intercepts.is_empty() {
        ensure!(
            coefficients.len().is_multiple_of(intercepts.len()),
            "{}: {} coefficients is not a multiple of the {} intercepts",
            describe(node),
            coefficients.len(),
            intercepts.len()
        );
    }
    let labels = ClassLabels::parse(node, "classlabels_ints")?;
    let post_transform = PostTransform::parse(node)?;
    if intercepts.len() == 1 && labels.len() == 2 && post_transform == PostTransform::Probit {
        bail!("{}: PROBIT post_transform is not supported for a binary classifier with a single model", describe(node));
    }
    if intercepts.len() > 1 {
        ensure!(labels.len() >= intercepts.len(), "{}: {} models but only {} class labels", describe(node), intercepts.len(), labels.len());
    }
    Ok((wrap(LinearClassifier { coefficients, intercepts, labels, post_transform }), vec![]))
}

impl LinearClassifier {
    fn targets(&self, features: usize) -> TractResult<usize> {
        let targets = if self.intercepts.is_empty() {
            ensure!(
                features > 0 && self.coefficients.len().is_multiple_of(features),
                "LinearClassifier: {} coefficients do not fit {features} features",
                self.coefficients.len()
            );
            self.coefficients.len() / features
        } else {
            self.intercepts.len()
        };
        ensure!(
            targets * features == self.coefficients.len(),
            "LinearClassifier: input has {features} features, the model expects {}",
            self.coefficients.len() / targets
        );
        ensure!(
            targets == 1 || self.labels.len() >= targets,
            "LinearClassifier: {targets} models but only {} class labels",
            self.labels.len()
        );
        Ok(targets)
    }

    fn add_second_class(&self, targets: usize) -> bool {
        targets == 1 && self.labels.len() == 2
    }
}

impl Op for LinearClassifier {
    fn name(&self) -> StaticName {
        "LinearClassifier".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("post_transform: {:?}, {} labels", self.post_transform, self.labels.len())])
    }

    op_as_typed_op!();
}

impl EvalOp for LinearClassifier {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        ensure_numeric_input("LinearClassifier", input.datum_type())?;
        let (rows, features) = rows_and_features("LinearClassifier", input.shape())?;
        let targets = self.targets(features)?;
        let x = input_as_f32(&input)?;
        let x = x.try_as_plain_ram()?.as_slice::<f32>()?;
        let intercepts = (!self.intercepts.is_empty()).then_some(&*self.intercepts);
        let mut scores = linear_scores(x, rows, features, &self.coefficients, intercepts);
        let (labels, scores, width) = if targets == 1 {
            let binary_labels = self.labels.len() == 2;
            let labels: Vec<LabelChoice> = scores
                .iter()
                .map(|&s| match (s > 0.0, binary_labels) {
                    (true, true) => LabelChoice::Index(1),
                    (false, true) => LabelChoice::Index(0),
                    (true, false) => LabelChoice::Raw(1),
                    (false, false) => LabelChoice::Raw(0),
                })
                .collect();
            let transform = |s: f32| match self.post_transform {
                PostTransform::Logistic => logistic(s),
                PostTransform::Probit => probit(s),
                _ => s,
            };
            if self.add_second_class(targets) {
                let out = scores
                    .iter()
                    .flat_map(|&s| {
                        let p = transform(s);
                        [1.0 - p, p]
                    })
                    .collect();
                (labels, out, 2)
            } else {
                (labels, scores.into_iter().map(transform).collect(), 1)
            }
        } else {
            let labels = scores.chunks(targets).map(|row| LabelChoice::Index(argmax(row))).collect();
            scores.chunks_mut(targets).for_each(|row| self.post_transform.apply_row(row));
            (labels, scores, targets)
        };
        Ok(tvec!(self.labels.output(&labels)?.into_tvalue(), tensor_from_vec(&[rows, width], scores)?.into_tvalue()))
    }
}

impl TypedOp for LinearClassifier {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure_numeric_input("LinearClassifier", inputs[0].datum_type)?;
        let (rows, features) = rows_and_features_dims("LinearClassifier", inputs[0])?;
        let features = features.to_usize().context("LinearClassifier: the number of features must be known")?;
        let targets = self.targets(features)?;
        let width = if self.add_second_class(targets) { 2 } else { targets };
        Ok(tvec!(self.labels.datum_type().fact([rows.clone()]), f32::fact([rows, width.to_dim()])))
    }

    as_op!();
}

impl MlOp for LinearClassifier {
    fn output_count(&self) -> usize {
        2
    }

    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        _inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        classifier_rules(s, outputs, self.labels.datum_type())?;
        s.equals(&outputs[0].shape[0], &outputs[1].shape[0])
    }
}

/// The `ai.onnx.ml` `LinearRegressor` operator (output `[N, targets]`).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearRegressor {
    /// `[targets × features]`, row-major.
    pub coefficients: Vec<f32>,
    /// One per target, or empty (onnxruntime ignores intercepts of any other length).
    pub intercepts: Vec<f32>,
    /// Number of targets.
    pub targets: usize,
    /// Score transform (applied to rows of two targets or more; for one target only PROBIT is).
    pub post_transform: PostTransform,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for LinearRegressor {}

/// Builds a [`LinearRegressor`] from its ONNX node.
pub fn build_regressor(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let targets: i64 = node.get_attr_opt("targets")?.unwrap_or(1);
    ensure!(targets > 0, "{}: 'targets' must be positive, got {targets}", describe(node));
    let targets = targets as usize;
    let coefficients: Vec<f32> = node.get_attr_opt_vec("coefficients")?.unwrap_or_default();
    ensure!(
        !coefficients.is_empty() && coefficients.len().is_multiple_of(targets),
        "{}: {} coefficients is not a positive multiple of {targets} targets",
        describe(node),
        coefficients.len()
    );
    let mut intercepts: Vec<f32> = node.get_attr_opt_vec("intercepts")?.unwrap_or_default();
    if intercepts.len() != targets {
        intercepts.clear();
    }
    let post_transform = PostTransform::parse(node)?;
    Ok((wrap(LinearRegressor { coefficients, intercepts, targets, post_transform }), vec![]))
}

impl LinearRegressor {
    fn features(&self) -> usize {
        self.coefficients.len() / self.targets
    }
}

impl Op for LinearRegressor {
    fn name(&self) -> StaticName {
        "LinearRegressor".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} targets, post_transform: {:?}", self.targets, self.post_transform)])
    }

    op_as_typed_op!();
}

impl EvalOp for LinearRegressor {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        ensure_numeric_input("LinearRegressor", input.datum_type())?;
        let (rows, features) = rows_and_features("LinearRegressor", input.shape())?;
        ensure!(features == self.features(), "LinearRegressor: input has {features} features, the model expects {}", self.features());
        let x = input_as_f32(&input)?;
        let x = x.try_as_plain_ram()?.as_slice::<f32>()?;
        let intercepts = (!self.intercepts.is_empty()).then_some(&*self.intercepts);
        let mut y = linear_scores(x, rows, features, &self.coefficients, intercepts);
        if self.targets > 1 {
            y.chunks_mut(self.targets).for_each(|row| self.post_transform.apply_row(row));
        } else if self.post_transform == PostTransform::Probit {
            y.iter_mut().for_each(|v| *v = probit(*v));
        }
        Ok(tvec!(tensor_from_vec(&[rows, self.targets], y)?.into_tvalue()))
    }
}

impl TypedOp for LinearRegressor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure_numeric_input("LinearRegressor", inputs[0].datum_type)?;
        let (rows, features) = rows_and_features_dims("LinearRegressor", inputs[0])?;
        if let Ok(f) = features.to_usize() {
            ensure!(f == self.features(), "LinearRegressor: input has {f} features, the model expects {}", self.features());
        }
        Ok(tvec!(f32::fact([rows, self.targets.to_dim()])))
    }

    as_op!();
}

impl MlOp for LinearRegressor {
    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        _inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[1], self.targets.to_dim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(op: &dyn TypedOp, x: Tensor) -> TVec<Tensor> {
        op.as_op().eval_out_of_plan(tvec!(x.into_tvalue())).unwrap().unwrap().into_iter().map(|v| v.into_tensor()).collect()
    }

    #[test]
    fn binary_single_model_layout() {
        let op = LinearClassifier {
            coefficients: vec![1.0, -1.0],
            intercepts: vec![0.0],
            labels: ClassLabels::Ints(vec![3, 7]),
            post_transform: PostTransform::None,
        };
        let out = eval(&op, tensor2(&[[2f32, 0.5], [0.0, 1.0]]));
        assert_eq!(out[0], tensor1(&[7i64, 3]));
        assert_eq!(out[1], tensor2(&[[-0.5f32, 1.5], [2.0, -1.0]]));
    }

    #[test]
    fn multiclass_softmax_and_argmax() {
        let op = LinearClassifier {
            coefficients: vec![1.0, 0.0, 0.0, 1.0],
            intercepts: vec![0.0, 0.0],
            labels: ClassLabels::Strings(vec!["a".into(), "b".into()]),
            post_transform: PostTransform::Softmax,
        };
        let out = eval(&op, tensor2(&[[0f32, 1.0]]));
        assert_eq!(out[0], tensor1(&["b".to_string()]));
        let p = out[1].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6 && p[1] > p[0]);
    }

    #[test]
    fn regressor_checks_features() {
        let op =
            LinearRegressor { coefficients: vec![1.0, 2.0], intercepts: vec![0.5], targets: 1, post_transform: PostTransform::Logistic };
        assert_eq!(eval(&op, tensor2(&[[1f32, 1.0]]))[0], tensor2(&[[3.5f32]]));
        assert!(op.output_facts(&[&f32::fact([1, 3])]).is_err());
    }
}
