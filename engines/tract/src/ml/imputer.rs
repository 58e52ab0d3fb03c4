//! `Imputer`: replaces a sentinel value (NaN included) by per-feature or single values.

use super::common::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The `ai.onnx.ml` `Imputer` operator.
///
/// Float inputs (float, double) use `imputed_value_floats` / `replaced_value_float`, integer
/// inputs (int64, int32) `imputed_value_int64s` / `replaced_value_int64`. The imputed values are
/// per feature when there is one per feature, otherwise the first one is used everywhere.
#[derive(Debug, Clone, PartialEq)]
pub struct Imputer {
    /// `imputed_value_floats` (empty when absent).
    pub imputed_floats: Vec<f32>,
    /// `replaced_value_float` (default 0, NaN matches NaN).
    pub replaced_float: f32,
    /// `imputed_value_int64s` (empty when absent).
    pub imputed_ints: Vec<i64>,
    /// `replaced_value_int64` (default 0).
    pub replaced_int: i64,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for Imputer {}

/// Builds an [`Imputer`] from its ONNX node.
pub fn build(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let imputed_floats: Vec<f32> = node.get_attr_opt_vec("imputed_value_floats")?.unwrap_or_default();
    let imputed_ints: Vec<i64> = node.get_attr_opt_vec("imputed_value_int64s")?.unwrap_or_default();
    ensure!(
        imputed_floats.is_empty() != imputed_ints.is_empty(),
        "{}: exactly one of 'imputed_value_floats' and 'imputed_value_int64s' must be given",
        describe(node)
    );
    let replaced_float = node.get_attr_opt("replaced_value_float")?.unwrap_or(0.0);
    let replaced_int = node.get_attr_opt("replaced_value_int64")?.unwrap_or(0);
    Ok((wrap(Imputer { imputed_floats, replaced_float, imputed_ints, replaced_int }), vec![]))
}

fn impute<T: Datum + Copy + PartialEq>(input: &Tensor, replaced: T, imputed: &[T], is_nan: impl Fn(T) -> bool) -> TractResult<Tensor> {
    let shape = input.shape();
    ensure!(!shape.is_empty(), "Imputer: input has no dimension");
    let stride = if shape.len() == 1 { shape[0] } else { shape[1] };
    let per_feature = imputed.len() == stride;
    let replaced_nan = is_nan(replaced);
    let x = input.try_as_plain_ram()?.as_slice::<T>()?;
    let out: Vec<T> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| if (replaced_nan && is_nan(v)) || v == replaced { imputed[if per_feature { i % stride } else { 0 }] } else { v })
        .collect();
    tensor_from_vec(shape, out)
}

impl Imputer {
    fn check_type(&self, dt: DatumType) -> TractResult<()> {
        match effective_type(dt) {
            DatumType::F32 | DatumType::F64 => {
                ensure!(!self.imputed_floats.is_empty(), "Imputer: a {dt:?} input needs 'imputed_value_floats'")
            }
            DatumType::I32 | DatumType::I64 => {
                ensure!(!self.imputed_ints.is_empty(), "Imputer: an {dt:?} input needs 'imputed_value_int64s'")
            }
            _ => bail!("Imputer: input type {dt:?} is not supported (float, double, int32, int64)"),
        }
        Ok(())
    }
}

impl Op for Imputer {
    fn name(&self) -> StaticName {
        "Imputer".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Imputer {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        self.check_type(input.datum_type())?;
        let input = as_plain_int(&input)?;
        let out = match input.datum_type() {
            DatumType::F32 => impute(&input, self.replaced_float, &self.imputed_floats, f32::is_nan)?,
            DatumType::F64 => {
                let imputed: Vec<f64> = self.imputed_floats.iter().map(|&v| v as f64).collect();
                impute(&input, self.replaced_float as f64, &imputed, f64::is_nan)?
            }
            DatumType::I64 => impute(&input, self.replaced_int, &self.imputed_ints, |_| false)?,
            _ => {
                let imputed = self
                    .imputed_ints
                    .iter()
                    .map(|&v| i32::try_from(v))
                    .collect::<Result<Vec<i32>, _>>()
                    .context("Imputer: imputed value out of the int32 range")?;
                let replaced = i32::try_from(self.replaced_int).context("Imputer: replaced value out of the int32 range")?;
                impute(&input, replaced, &imputed, |_| false)?
            }
        };
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Imputer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.check_type(inputs[0].datum_type)?;
        ensure!(inputs[0].rank() >= 1, "Imputer: input has no dimension");
        Ok(tvec!(effective_type(inputs[0].datum_type).fact(inputs[0].shape.to_tvec())))
    }

    as_op!();
}

impl MlOp for Imputer {
    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&outputs[0].shape, &inputs[0].shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(floats: Vec<f32>, replaced_float: f32, ints: Vec<i64>) -> Imputer {
        Imputer { imputed_floats: floats, replaced_float, imputed_ints: ints, replaced_int: 0 }
    }

    #[test]
    fn nan_per_feature() {
        let op = op(vec![1.0, 2.0], f32::NAN, vec![]);
        let out = op.eval(&EvalContext::out_of_plan(), tvec!(tensor2(&[[f32::NAN, 5.0], [3.0, f32::NAN]]).into_tvalue())).unwrap();
        assert_eq!(out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(), &[1.0, 5.0, 3.0, 2.0]);
    }

    #[test]
    fn ints_single_value() {
        let op = op(vec![], 0.0, vec![7]);
        let out = op.eval(&EvalContext::out_of_plan(), tvec!(tensor2(&[[0i64, 5, 0]]).into_tvalue())).unwrap();
        assert_eq!(out[0].try_as_plain_ram().unwrap().as_slice::<i64>().unwrap(), &[7, 5, 7]);
    }

    #[test]
    fn missing_values_for_type_is_an_error() {
        let op = op(vec![1.0], 0.0, vec![]);
        assert!(op.output_facts(&[&i64::fact([2, 2])]).is_err());
    }
}
