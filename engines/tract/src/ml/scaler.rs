//! `Scaler`: `y = (x - offset) * scale`, per feature or with one value for all.

use super::common::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The `ai.onnx.ml` `Scaler` operator.
///
/// `offset` and `scale` hold either one value per feature (the size of the second input
/// dimension, or of the first one for a rank 1 input) or a single value. The output is float.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    /// Subtracted first.
    pub offset: Vec<f32>,
    /// Multiplied second.
    pub scale: Vec<f32>,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for Scaler {}

/// Builds a [`Scaler`] from its ONNX node.
pub fn build(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scale: Vec<f32> = node.get_attr_opt_vec("scale")?.unwrap_or_default();
    let offset: Vec<f32> = node.get_attr_opt_vec("offset")?.unwrap_or_default();
    ensure!(!scale.is_empty(), "{}: attribute 'scale' is empty or missing", describe(node));
    ensure!(scale.len() == offset.len(), "{}: 'scale' has {} values but 'offset' has {}", describe(node), scale.len(), offset.len());
    Ok((wrap(Scaler { offset, scale }), vec![]))
}

impl Scaler {
    fn stride_dim(shape: &[TDim]) -> Option<&TDim> {
        match shape.len() {
            0 => None,
            1 => Some(&shape[0]),
            _ => Some(&shape[1]),
        }
    }

    fn check_stride(&self, stride: usize) -> TractResult<()> {
        ensure!(
            self.scale.len() == 1 || self.scale.len() == stride,
            "Scaler: scale and offset must hold one value or one per feature ({stride}), got {}",
            self.scale.len()
        );
        Ok(())
    }
}

impl Op for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Scaler {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = as_plain_int(&input)?;
        let shape = input.shape().to_vec();
        ensure!(!shape.is_empty(), "Scaler: input has no dimension");
        let stride = if shape.len() == 1 { shape[0] } else { shape[1] };
        self.check_stride(stride)?;
        let per_feature = self.scale.len() == stride;
        let at = |i: usize| if per_feature { i % stride } else { 0 };
        let out: Vec<f32> = if input.datum_type() == DatumType::F64 {
            let x = input.try_as_plain_ram()?.as_slice::<f64>()?;
            x.iter().enumerate().map(|(i, &v)| ((v - self.offset[at(i)] as f64) * self.scale[at(i)] as f64) as f32).collect()
        } else {
            ensure_numeric_input("Scaler", input.datum_type())?;
            let x = input_as_f32(&input)?;
            let x = x.try_as_plain_ram()?.as_slice::<f32>()?;
            x.iter().enumerate().map(|(i, &v)| (v - self.offset[at(i)]) * self.scale[at(i)]).collect()
        };
        Ok(tvec!(tensor_from_vec(&shape, out)?.into_tvalue()))
    }
}

impl TypedOp for Scaler {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure_numeric_input("Scaler", inputs[0].datum_type)?;
        let shape = inputs[0].shape.to_tvec();
        let stride = Self::stride_dim(&shape).context("Scaler: input has no dimension")?;
        if let Ok(stride) = stride.to_usize() {
            self.check_stride(stride)?;
        }
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

impl MlOp for Scaler {
    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].shape, &inputs[0].shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &Scaler, input: Tensor) -> TractResult<Vec<f32>> {
        let out = op.eval(&EvalContext::out_of_plan(), tvec!(input.into_tvalue()))?;
        Ok(out[0].try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
    }

    #[test]
    fn per_feature_and_scalar() {
        let op = Scaler { offset: vec![1.0, 2.0], scale: vec![2.0, 0.5] };
        let y = run(&op, tensor2(&[[1f32, 4.0], [3.0, 0.0]])).unwrap();
        assert_eq!(y, vec![0.0, 1.0, 4.0, -1.0]);
        let op = Scaler { offset: vec![1.0], scale: vec![2.0] };
        let y = run(&op, tensor2(&[[1i64, 4], [3, 0]])).unwrap();
        assert_eq!(y, vec![0.0, 6.0, 4.0, -2.0]);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let op = Scaler { offset: vec![1.0, 2.0], scale: vec![2.0, 0.5] };
        assert!(run(&op, tensor2(&[[1f32, 4.0, 5.0]])).is_err());
        let fact = f32::fact([1, 3]);
        assert!(op.output_facts(&[&fact]).is_err());
    }
}
