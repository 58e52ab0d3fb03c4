//! `Normalizer`: row-wise MAX, L1 or L2 normalisation.
//!
//! Replaces tract's own `Normalizer`, which divides by the maximum *absolute* value for `MAX` and
//! clamps the norm with an epsilon: onnxruntime divides by the plain maximum and leaves rows with
//! a zero norm untouched, and converted models are validated against onnxruntime.

use super::common::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The normalisation applied to each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Norm {
    /// Divide by the row maximum (when non zero).
    Max,
    /// Divide by the sum of absolute values (when non zero).
    L1,
    /// Divide by the euclidean norm (when non zero).
    L2,
}

/// The `ai.onnx.ml` `Normalizer` operator. Input rank 1 or 2, float output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Normalizer {
    /// The norm.
    pub norm: Norm,
}

/// Builds a [`Normalizer`] from its ONNX node.
pub fn build(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let norm: Option<String> = node.get_attr_opt("norm")?;
    let norm = match norm.as_deref() {
        None | Some("MAX") => Norm::Max,
        Some("L1") => Norm::L1,
        Some("L2") => Norm::L2,
        Some(other) => {
            bail!("{}: invalid norm '{other}' (expected MAX, L1 or L2)", describe(node))
        }
    };
    Ok((wrap(Normalizer { norm }), vec![]))
}

impl Normalizer {
    fn normalize_row(&self, x: &[f64], out: &mut [f32]) {
        match self.norm {
            Norm::Max => {
                let max = x.iter().fold(f32::MIN, |m, &v| m.max(v as f32));
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = if max != 0.0 { v as f32 / max } else { v as f32 };
                }
            }
            Norm::L1 => {
                let sum: f32 = x.iter().map(|v| v.abs() as f32).sum();
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = if sum != 0.0 { v as f32 / sum } else { v as f32 };
                }
            }
            Norm::L2 => {
                let squares: Vec<f32> = x.iter().map(|v| (v * v) as f32).collect();
                let sum: f32 = squares.iter().sum();
                for ((o, &v), &sq) in out.iter_mut().zip(x).zip(&squares) {
                    *o = if sum != 0.0 {
                        let r = (sq / sum).sqrt();
                        if v < 0.0 {
                            -r
                        } else {
                            r
                        }
                    } else {
                        v as f32
                    };
                }
            }
        }
    }
}

impl Op for Normalizer {
    fn name(&self) -> StaticName {
        "Normalizer".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("norm: {:?}", self.norm)])
    }

    op_as_typed_op!();
}

impl EvalOp for Normalizer {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        ensure_numeric_input("Normalizer", input.datum_type())?;
        let shape = input.shape().to_vec();
        let (rows, features) = rows_and_features("Normalizer", &shape)?;
        let x = as_plain_int(&input)?;
        let x = x.cast_to::<f64>()?;
        let x = x.try_as_plain_ram()?.as_slice::<f64>()?;
        let mut out = vec![0f32; rows * features];
        if features > 0 {
            for (xr, or) in x.chunks(features).zip(out.chunks_mut(features)) {
                self.normalize_row(xr, or);
            }
        }
        Ok(tvec!(tensor_from_vec(&shape, out)?.into_tvalue()))
    }
}

impl TypedOp for Normalizer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure_numeric_input("Normalizer", inputs[0].datum_type)?;
        rows_and_features_dims("Normalizer", inputs[0])?;
        Ok(tvec!(f32::fact(inputs[0].shape.to_tvec())))
    }

    as_op!();
}

impl MlOp for Normalizer {
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

    fn run(norm: Norm, input: Tensor) -> Vec<f32> {
        let op = Normalizer { norm };
        let out = op.eval(&EvalContext::out_of_plan(), tvec!(input.into_tvalue())).unwrap();
        out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn norms() {
        let x = tensor2(&[[1f32, -3.0, 2.0], [0.0, 0.0, 0.0]]);
        assert_eq!(run(Norm::Max, x.clone()), vec![0.5, -1.5, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(run(Norm::L1, x.clone()), vec![1.0 / 6.0, -0.5, 1.0 / 3.0, 0.0, 0.0, 0.0]);
        let l2 = run(Norm::L2, x);
        let n = 14f32.sqrt();
        for (a, b) in l2.iter().zip([1.0 / n, -3.0 / n, 2.0 / n, 0.0, 0.0, 0.0]) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn max_of_negative_row_divides_by_negative() {
        assert_eq!(run(Norm::Max, tensor1(&[-2f32, -4.0])), vec![1.0, 2.0]);
    }
}
