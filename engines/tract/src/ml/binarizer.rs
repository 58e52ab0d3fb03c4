//! `Binarizer`: `1` where the input is greater than the threshold, `0` elsewhere.

use super::common::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The `ai.onnx.ml` `Binarizer` operator. The output has the input's type; NaN inputs are
/// rejected at run time, as onnxruntime does.
#[derive(Debug, Clone, PartialEq)]
pub struct Binarizer {
    /// Values strictly greater than this become 1 (default 0).
    pub threshold: f32,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for Binarizer {}

/// Builds a [`Binarizer`] from its ONNX node.
pub fn build(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let threshold = node.get_attr_opt("threshold")?.unwrap_or(0.0);
    Ok((wrap(Binarizer { threshold }), vec![]))
}

fn binarize<T>(input: &Tensor, threshold: f32) -> TractResult<Tensor>
where
    T: Datum + Copy + tract_num_traits::AsPrimitive<f32> + tract_num_traits::Zero + tract_num_traits::One,
{
    let x = input.try_as_plain_ram()?.as_slice::<T>()?;
    let out = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let f: f32 = v.as_();
            ensure!(!f.is_nan(), "Binarizer: input element {i} is NaN");
            Ok(if f > threshold { T::one() } else { T::zero() })
        })
        .collect::<TractResult<Vec<T>>>()?;
    tensor_from_vec(input.shape(), out)
}

impl Op for Binarizer {
    fn name(&self) -> StaticName {
        "Binarizer".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Binarizer {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = as_plain_int(&input)?;
        let out = match input.datum_type() {
            DatumType::F32 => binarize::<f32>(&input, self.threshold)?,
            DatumType::F64 => {
                // compare in double precision, as a double kernel would
                let x = input.try_as_plain_ram()?.as_slice::<f64>()?;
                let out = x
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        ensure!(!v.is_nan(), "Binarizer: input element {i} is NaN");
                        Ok(if v > self.threshold as f64 { 1.0 } else { 0.0 })
                    })
                    .collect::<TractResult<Vec<f64>>>()?;
                tensor_from_vec(input.shape(), out)?
            }
            DatumType::I64 => binarize::<i64>(&input, self.threshold)?,
            DatumType::I32 => binarize::<i32>(&input, self.threshold)?,
            dt => bail!("Binarizer: input type {dt:?} is not supported"),
        };
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Binarizer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure_numeric_input("Binarizer", inputs[0].datum_type)?;
        Ok(tvec!(effective_type(inputs[0].datum_type).fact(inputs[0].shape.to_tvec())))
    }

    as_op!();
}

impl MlOp for Binarizer {
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

    #[test]
    fn thresholds() {
        let op = Binarizer { threshold: 0.5 };
        let out = op.eval(&EvalContext::out_of_plan(), tvec!(tensor1(&[0.5f32, 0.6, -1.0]).into_tvalue())).unwrap();
        assert_eq!(out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(), &[0.0, 1.0, 0.0]);
    }

    #[test]
    fn nan_is_an_error() {
        let op = Binarizer { threshold: 0.0 };
        let err = op.eval(&EvalContext::out_of_plan(), tvec!(tensor1(&[f32::NAN]).into_tvalue()));
        assert!(format!("{:?}", err.unwrap_err()).contains("NaN"));
    }
}
