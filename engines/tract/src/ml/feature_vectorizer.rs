//! `FeatureVectorizer`: concatenates its inputs' features into one float matrix.

use super::common::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The `ai.onnx.ml` `FeatureVectorizer` operator.
///
/// Input `i` contributes `inputdimensions[i]` columns: its features (everything after the first
/// axis, or the whole tensor when rank 1) are truncated or zero-padded to that count. The output is
/// `[N, sum(inputdimensions)]` float, `N` being the first input's first dimension (1 if rank 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeatureVectorizer {
    /// Columns taken from each input.
    pub input_dimensions: Vec<usize>,
}

/// Builds a [`FeatureVectorizer`] from its ONNX node.
pub fn build(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let input_dimensions: Vec<usize> = node.get_attr_opt_vec("inputdimensions")?.unwrap_or_default();
    ensure!(
        input_dimensions.len() == node.input.len(),
        "{}: {} inputs but {} 'inputdimensions' values",
        describe(node),
        node.input.len(),
        input_dimensions.len()
    );
    Ok((wrap(FeatureVectorizer { input_dimensions }), vec![]))
}

impl FeatureVectorizer {
    fn total(&self) -> usize {
        self.input_dimensions.iter().sum()
    }
}

impl Op for FeatureVectorizer {
    fn name(&self) -> StaticName {
        "FeatureVectorizer".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FeatureVectorizer {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == self.input_dimensions.len(),
            "FeatureVectorizer: {} inputs but {} inputdimensions",
            inputs.len(),
            self.input_dimensions.len()
        );
        let first = inputs.first().context("FeatureVectorizer: no input")?;
        ensure!(first.rank() >= 1, "FeatureVectorizer: input 0 has no dimension");
        let n = if first.rank() == 1 { 1 } else { first.shape()[0] };
        let total = self.total();
        let mut out = vec![0f32; n * total];
        let mut offset = 0;
        for (ix, (input, &width)) in inputs.iter().zip(&self.input_dimensions).enumerate() {
            ensure_numeric_input("FeatureVectorizer", input.datum_type())?;
            ensure!(input.rank() >= 1, "FeatureVectorizer: input {ix} has no dimension");
            let (rows, size) =
                if input.rank() == 1 { (1, input.shape()[0]) } else { (input.shape()[0], input.shape()[1..].iter().product()) };
            ensure!(rows <= n, "FeatureVectorizer: input {ix} has {rows} rows, more than the first input ({n})");
            let x = input_as_f32(input)?;
            let x = x.try_as_plain_ram()?.as_slice::<f32>()?;
            let copied = size.min(width);
            for r in 0..rows {
                let src = &x[r * size..r * size + copied];
                out[r * total + offset..r * total + offset + copied].copy_from_slice(src);
            }
            offset += width;
        }
        Ok(tvec!(tensor_from_vec(&[n, total], out)?.into_tvalue()))
    }
}

impl TypedOp for FeatureVectorizer {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == self.input_dimensions.len(),
            "FeatureVectorizer: {} inputs but {} inputdimensions",
            inputs.len(),
            self.input_dimensions.len()
        );
        for input in inputs {
            ensure_numeric_input("FeatureVectorizer", input.datum_type)?;
            ensure!(input.rank() >= 1, "FeatureVectorizer: an input has no dimension");
        }
        let n = if inputs[0].rank() == 1 { 1.to_dim() } else { inputs[0].shape[0].clone() };
        Ok(tvec!(f32::fact([n, self.total().to_dim()])))
    }

    as_op!();
}

impl MlOp for FeatureVectorizer {
    fn input_count(&self) -> Option<usize> {
        Some(self.input_dimensions.len())
    }

    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        _inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[1], self.total().to_dim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_and_pads() {
        let op = FeatureVectorizer { input_dimensions: vec![1, 3] };
        let a = tensor2(&[[1f32, 2.0], [3.0, 4.0]]);
        let b = tensor2(&[[5i64], [6]]);
        let out = op.eval(&EvalContext::out_of_plan(), tvec!(a.into_tvalue(), b.into_tvalue())).unwrap();
        assert_eq!(out[0].clone().into_tensor(), tensor2(&[[1f32, 5.0, 0.0, 0.0], [3.0, 6.0, 0.0, 0.0]]));
    }
}
