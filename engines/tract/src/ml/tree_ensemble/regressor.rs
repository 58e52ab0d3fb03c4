//! The `ai.onnx.ml` `TreeEnsembleRegressor` operator.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::{check_input_fact, input_rows, Acc, Score, TreeEnsemble};
use crate::ml::common::*;

/// How the leaf values of the trees are combined (regressor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    /// Sum.
    Sum,
    /// Sum divided by the number of trees.
    Average,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

/// The `ai.onnx.ml` `TreeEnsembleRegressor` operator (output `[N, n_targets]` float).
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsembleRegressor {
    /// The trees.
    pub ensemble: TreeEnsemble,
    /// Number of targets.
    pub targets: usize,
    /// Combination of the trees.
    pub aggregate: Aggregate,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for TreeEnsembleRegressor {}

/// Builds a [`TreeEnsembleRegressor`] from its ONNX node.
pub fn build_regressor(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let targets: i64 = node.get_attr_opt("n_targets")?.unwrap_or(1);
    ensure!(targets > 0, "{}: 'n_targets' must be positive, got {targets}", describe(node));
    let targets = targets as usize;
    let aggregate: Option<String> = node.get_attr_opt("aggregate_function")?;
    let aggregate = match aggregate.as_deref() {
        None | Some("SUM") => Aggregate::Sum,
        Some("AVERAGE") => Aggregate::Average,
        Some("MIN") => Aggregate::Min,
        Some("MAX") => Aggregate::Max,
        Some(other) => bail!("{}: invalid aggregate_function '{other}' (expected SUM, AVERAGE, MIN or MAX)", describe(node)),
    };
    let ensemble =
        TreeEnsemble::parse(ctx, node, "target", targets).with_context(|| format!("{}: invalid tree ensemble", describe(node)))?;
    Ok((wrap(TreeEnsembleRegressor { ensemble, targets, aggregate }), vec![]))
}

impl TreeEnsembleRegressor {
    fn eval_t<T: Acc + Datum>(&self, input: &Tensor) -> TractResult<Tensor> {
        let e = &self.ensemble;
        let (rows, f, x) = input_rows::<T>("TreeEnsembleRegressor", e, input)?;
        let trees = T::count(e.roots.len());
        let base = &e.base_values;
        let mut out = vec![0f32; rows * self.targets];
        for (r, out_row) in out.chunks_mut(self.targets).enumerate() {
            let xr = &x[r * f..(r + 1) * f];
            if self.targets == 1 {
                // onnxruntime's single-target path: one weight per leaf, no transform but PROBIT
                let origin = if base.len() == 1 { T::of(base[0]) } else { T::zero() };
                let mut score = Score::<T>::new();
                for &root in &e.roots {
                    let w = T::of(e.leaf_weights(e.leaf(root, xr))[0].1);
                    self.accumulate(&mut score, w);
                }
                let v = match self.aggregate {
                    Aggregate::Sum => score.value + origin,
                    Aggregate::Average => score.value / trees + origin,
                    Aggregate::Min | Aggregate::Max => {
                        if score.set {
                            score.value + origin
                        } else {
                            origin
                        }
                    }
                };
                out_row[0] = if e.post_transform == PostTransform::Probit { probit(v.to_f32()) } else { v.to_f32() };
            } else {
                let mut scores = vec![Score::<T>::new(); self.targets];
                for &root in &e.roots {
                    for &(t, w) in e.leaf_weights(e.leaf(root, xr)) {
                        self.accumulate(&mut scores[t], T::of(w));
                    }
                }
                let use_base = base.len() == self.targets;
                for (t, (o, s)) in out_row.iter_mut().zip(&scores).enumerate() {
                    let b = if use_base { T::of(base[t]) } else { T::zero() };
                    let v = match self.aggregate {
                        Aggregate::Sum => s.value + b,
                        Aggregate::Average => s.value / trees + b,
                        Aggregate::Min | Aggregate::Max => b + s.or_zero(),
                    };
                    // like onnxruntime, targets no tree contributed to are written as 0
                    *o = if s.set { v.to_f32() } else { 0.0 };
                }
                e.post_transform.apply_row(out_row);
            }
        }
        tensor_from_vec(&[rows, self.targets], out)
    }

    fn accumulate<T: Acc>(&self, score: &mut Score<T>, w: T) {
        score.value = match self.aggregate {
            Aggregate::Sum | Aggregate::Average => score.value + w,
            Aggregate::Min => {
                if !score.set || w < score.value {
                    w
                } else {
                    score.value
                }
            }
            Aggregate::Max => {
                if !score.set || w > score.value {
                    w
                } else {
                    score.value
                }
            }
        };
        score.set = true;
    }
}

impl Op for TreeEnsembleRegressor {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} trees, {} nodes, {} targets, {:?}, post_transform: {:?}",
            self.ensemble.roots.len(),
            self.ensemble.nodes.len(),
            self.targets,
            self.aggregate,
            self.ensemble.post_transform
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleRegressor {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let out = if input.datum_type() == DatumType::F64 { self.eval_t::<f64>(&input)? } else { self.eval_t::<f32>(&input)? };
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for TreeEnsembleRegressor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = check_input_fact("TreeEnsembleRegressor", &self.ensemble, inputs[0])?;
        Ok(tvec!(f32::fact([rows, self.targets.to_dim()])))
    }

    as_op!();
}

impl MlOp for TreeEnsembleRegressor {
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
