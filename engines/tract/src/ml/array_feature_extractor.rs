//! `ArrayFeatureExtractor`: gathers elements of the last axis of `X` at the indices `Y`.

use super::common::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The `ai.onnx.ml` `ArrayFeatureExtractor` operator.
///
/// Output shape: `X`'s shape with the last axis replaced by the number of indices, except for a
/// rank 1 `X` where it is `[1, #indices]` (onnxruntime's behaviour, which skl2onnx relies on when
/// it looks class labels up with this op). Indices must lie in `[0, last axis size)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ArrayFeatureExtractor;

/// Builds an [`ArrayFeatureExtractor`] from its ONNX node.
pub fn build(_ctx: &ParsingContext, _node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((wrap(ArrayFeatureExtractor), vec![]))
}

fn gather<T: Datum>(x: &Tensor, indices: &[usize], out_shape: &[usize]) -> TractResult<Tensor> {
    let data = x.try_as_plain_ram()?.as_slice::<T>()?;
    let stride = *x.shape().last().context("ArrayFeatureExtractor: X has no dimension")?;
    let mut out = Vec::with_capacity(out_shape.iter().product());
    if stride > 0 {
        for row in data.chunks(stride) {
            out.extend(indices.iter().map(|&ix| row[ix].clone()));
        }
    }
    tensor_from_vec(out_shape, out)
}

impl Op for ArrayFeatureExtractor {
    fn name(&self) -> StaticName {
        "ArrayFeatureExtractor".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ArrayFeatureExtractor {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, y) = args_2!(inputs);
        ensure!(x.rank() >= 1, "ArrayFeatureExtractor: X has no dimension");
        let stride = x.shape()[x.rank() - 1];
        let y = y.cast_to::<i64>()?;
        let raw = y.try_as_plain_ram()?.as_slice::<i64>()?;
        ensure!(!raw.is_empty(), "ArrayFeatureExtractor: no index given");
        let indices = raw
            .iter()
            .enumerate()
            .map(|(i, &ix)| {
                usize::try_from(ix)
                    .ok()
                    .filter(|&ix| ix < stride)
                    .with_context(|| format!("ArrayFeatureExtractor: index Y[{i}] = {ix} is out of range [0, {stride})"))
            })
            .collect::<TractResult<Vec<usize>>>()?;
        let out_shape: Vec<usize> = if x.rank() == 1 {
            vec![1, indices.len()]
        } else {
            let mut s = x.shape().to_vec();
            s[x.rank() - 1] = indices.len();
            s
        };
        let out = dispatch_datum!(gather(x.datum_type())(&x, &indices, &out_shape))?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for ArrayFeatureExtractor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (x, y) = (inputs[0], inputs[1]);
        ensure!(x.rank() >= 1, "ArrayFeatureExtractor: X has no dimension");
        ensure!(
            matches!(effective_type(y.datum_type), DatumType::I64 | DatumType::I32),
            "ArrayFeatureExtractor: indices must be int64, got {:?}",
            y.datum_type
        );
        let n: TDim = y.shape.iter().product();
        let shape: TVec<TDim> = if x.rank() == 1 {
            tvec!(1.to_dim(), n)
        } else {
            let mut s = x.shape.to_tvec();
            let last = s.len() - 1;
            s[last] = n;
            s
        };
        Ok(tvec!(x.datum_type.fact(shape)))
    }

    as_op!();
}

impl MlOp for ArrayFeatureExtractor {
    fn input_count(&self) -> Option<usize> {
        Some(2)
    }

    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(x: Tensor, y: Tensor) -> TractResult<Tensor> {
        let out = ArrayFeatureExtractor.eval(&EvalContext::out_of_plan(), tvec!(x.into_tvalue(), y.into_tvalue()))?;
        Ok(out[0].clone().into_tensor())
    }

    #[test]
    fn gathers_last_axis() {
        let out = run(tensor2(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]]), tensor1(&[2i64, 0])).unwrap();
        assert_eq!(out, tensor2(&[[3f32, 1.0], [6.0, 4.0]]));
    }

    #[test]
    fn rank_one_gives_one_row() {
        let labels = tensor1(&["a".to_string(), "b".to_string()]);
        let out = run(labels, tensor1(&[1i64, 1, 0])).unwrap();
        assert_eq!(out.shape(), &[1, 3]);
    }

    #[test]
    fn out_of_range_is_an_error() {
        assert!(run(tensor1(&[1f32, 2.0]), tensor1(&[2i64])).is_err());
        assert!(run(tensor1(&[1f32, 2.0]), tensor1(&[-1i64])).is_err());
    }
}
