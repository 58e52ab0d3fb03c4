//! `OneHotEncoder`: one float vector per input element, with a 1 at the element's category.

use super::common::*;
use std::collections::HashMap;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The categories of a [`OneHotEncoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Categories {
    /// `cats_int64s`: used for int64, int32, float and double inputs (floats are truncated).
    Ints(HashMap<i64, usize>),
    /// `cats_strings`: used for string inputs.
    Strings(HashMap<String, usize>),
}

/// The `ai.onnx.ml` `OneHotEncoder` operator.
///
/// The output shape is the input shape plus a trailing axis of size `#categories`. Unknown values
/// give all-zero vectors when `zeros` is 1 (the default), and a run-time error otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneHotEncoder {
    /// Category → position.
    pub categories: Categories,
    /// Number of categories (the size of the new axis).
    pub count: usize,
    /// Whether unknown categories give zeros (else an error).
    pub zeros: bool,
}

/// Builds a [`OneHotEncoder`] from its ONNX node.
pub fn build(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ints: Vec<i64> = node.get_attr_opt_vec("cats_int64s")?.unwrap_or_default();
    let strings: Vec<String> = node.get_attr_opt_vec("cats_strings")?.unwrap_or_default();
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    let (categories, count) = match (ints.is_empty(), strings.is_empty()) {
        (false, true) => {
            let n = ints.len();
            (Categories::Ints(ints.into_iter().enumerate().map(|(i, c)| (c, i)).collect()), n)
        }
        (true, false) => {
            let n = strings.len();
            (Categories::Strings(strings.into_iter().enumerate().map(|(i, c)| (c, i)).collect()), n)
        }
        (true, true) => {
            bail!("{}: one of 'cats_int64s' and 'cats_strings' is required", describe(node))
        }
        (false, false) => {
            bail!("{}: only one of 'cats_int64s' and 'cats_strings' may be set", describe(node))
        }
    };
    Ok((wrap(OneHotEncoder { categories, count, zeros }), vec![]))
}

impl OneHotEncoder {
    fn position(&self, input: &Tensor, i: usize) -> TractResult<Option<usize>> {
        let view = input.try_as_plain_ram()?;
        Ok(match (&self.categories, input.datum_type()) {
            (Categories::Strings(map), DatumType::String) => map.get(&view.as_slice::<String>()?[i]).copied(),
            (Categories::Strings(_), _) | (Categories::Ints(_), DatumType::String) => None,
            (Categories::Ints(map), DatumType::I64) => map.get(&view.as_slice::<i64>()?[i]).copied(),
            (Categories::Ints(map), DatumType::I32) => map.get(&(view.as_slice::<i32>()?[i] as i64)).copied(),
            (Categories::Ints(map), DatumType::F32) => float_key(view.as_slice::<f32>()?[i] as f64).and_then(|k| map.get(&k).copied()),
            (Categories::Ints(map), DatumType::F64) => float_key(view.as_slice::<f64>()?[i]).and_then(|k| map.get(&k).copied()),
            (_, dt) => bail!("OneHotEncoder: input type {dt:?} is not supported"),
        })
    }
}

/// A float category, truncated towards zero like a C++ cast; NaN and infinities match nothing.
fn float_key(v: f64) -> Option<i64> {
    v.is_finite().then_some(v.trunc() as i64)
}

fn check_type(dt: DatumType) -> TractResult<()> {
    ensure!(
        matches!(effective_type(dt), DatumType::String | DatumType::I64 | DatumType::I32 | DatumType::F32 | DatumType::F64),
        "OneHotEncoder: input type {dt:?} is not supported (string, int64, int32, float, double)"
    );
    Ok(())
}

impl Op for OneHotEncoder {
    fn name(&self) -> StaticName {
        "OneHotEncoder".into()
    }

    op_as_typed_op!();
}

impl EvalOp for OneHotEncoder {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        check_type(input.datum_type())?;
        let input = as_plain_int(&input)?;
        let len = input.len();
        let mut out = vec![0f32; len * self.count];
        for i in 0..len {
            match self.position(&input, i)? {
                Some(pos) => out[i * self.count + pos] = 1.0,
                None if self.zeros => {}
                None => bail!("OneHotEncoder: unknown category at element {i} and zeros = 0"),
            }
        }
        let mut shape = input.shape().to_vec();
        shape.push(self.count);
        Ok(tvec!(tensor_from_vec(&shape, out)?.into_tvalue()))
    }
}

impl TypedOp for OneHotEncoder {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        check_type(inputs[0].datum_type)?;
        let mut shape = inputs[0].shape.to_tvec();
        shape.push(self.count.to_dim());
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

impl MlOp for OneHotEncoder {
    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, inputs[0].rank.bex() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(cats: &[i64], zeros: bool) -> OneHotEncoder {
        OneHotEncoder { categories: Categories::Ints(cats.iter().enumerate().map(|(i, &c)| (c, i)).collect()), count: cats.len(), zeros }
    }

    #[test]
    fn encodes_and_ignores_unknown() {
        let out = op(&[3, 5], true).eval(&EvalContext::out_of_plan(), tvec!(tensor1(&[5i64, 4, 3]).into_tvalue())).unwrap();
        assert_eq!(out[0].clone().into_tensor(), tensor2(&[[0f32, 1.0], [0.0, 0.0], [1.0, 0.0]]));
    }

    #[test]
    fn floats_are_truncated() {
        let out = op(&[1, 2], true).eval(&EvalContext::out_of_plan(), tvec!(tensor1(&[1.9f32, f32::NAN]).into_tvalue())).unwrap();
        assert_eq!(out[0].clone().into_tensor(), tensor2(&[[1f32, 0.0], [0.0, 0.0]]));
    }

    #[test]
    fn unknown_without_zeros_is_an_error() {
        let err = op(&[1], false).eval(&EvalContext::out_of_plan(), tvec!(tensor1(&[2i64]).into_tvalue())).unwrap_err();
        assert!(format!("{err:?}").contains("unknown category"));
    }
}
