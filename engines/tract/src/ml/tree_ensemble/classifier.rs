//! The `ai.onnx.ml` `TreeEnsembleClassifier` operator, with onnxruntime's finalization of
//! binary and multi-class scores.

use std::collections::HashSet;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::{check_input_fact, input_rows, Acc, Score, TreeEnsemble};
use crate::ml::common::*;

/// The `ai.onnx.ml` `TreeEnsembleClassifier` operator (outputs: labels `[N]`, scores
/// `[N, #classes]` float). Leaf weights are summed per class whatever `aggregate_function` says.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsembleClassifier {
    /// The trees.
    pub ensemble: TreeEnsemble,
    /// Class labels.
    pub labels: ClassLabels,
    /// Two classes, leaves all contributing to the same one: a single score decides.
    pub binary_case: bool,
    /// No negative leaf weight.
    pub weights_are_all_positive: bool,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for TreeEnsembleClassifier {}

/// Builds a [`TreeEnsembleClassifier`] from its ONNX node.
pub fn build_classifier(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let labels = ClassLabels::parse(node, "classlabels_int64s")?;
    ensure!(labels.len() >= 2, "{}: at least two class labels are needed", describe(node));
    let ensemble =
        TreeEnsemble::parse(ctx, node, "class", labels.len()).with_context(|| format!("{}: invalid tree ensemble", describe(node)))?;
    ensure!(
        ensemble.base_values.len() <= labels.len(),
        "{}: {} base values for {} classes",
        describe(node),
        ensemble.base_values.len(),
        labels.len()
    );
    let classes: HashSet<usize> = ensemble.weights.iter().map(|w| w.0).collect();
    let weights_are_all_positive = floats_or_tensor(ctx, node, "class_weights")?.unwrap_or_default().iter().all(|&w| w >= 0.0);
    let binary_case = labels.len() == 2 && classes.len() == 1;
    let op = TreeEnsembleClassifier { ensemble, labels, binary_case, weights_are_all_positive };
    Ok((wrap(op), vec![]))
}

impl TreeEnsembleClassifier {
    /// Label and scores of one row from the per-class sums (onnxruntime's classifier
    /// finalization).
    fn finalize<T: Acc>(&self, mut scores: Vec<Score<T>>, out: &mut [f32]) -> LabelChoice {
        let base = &self.ensemble.base_values;
        let pt = self.ensemble.post_transform;
        if self.labels.len() > 2 {
            for (s, &b) in scores.iter_mut().zip(base) {
                s.value = if s.set { s.value + T::of(b) } else { T::of(b) };
                s.set = true;
            }
            let mut best: Option<usize> = None;
            for (i, s) in scores.iter().enumerate() {
                if s.set && best.is_none_or(|b| s.value > scores[b].value) {
                    best = Some(i);
                }
            }
            for (o, s) in out.iter_mut().zip(&scores) {
                *o = s.or_zero().to_f32();
            }
            pt.apply_row(out);
            return LabelChoice::Index(best.unwrap_or(0));
        }
        // two classes
        let mut add_second_class = -1;
        let mut second = true;
        match base.len() {
            2 => {
                if scores[1].set {
                    scores[1].value = T::of(base[1]) + scores[0].value;
                    scores[0].value = -scores[1].value;
                } else {
                    scores[1].value = scores[1].value + T::of(base[1]);
                    scores[0].value = scores[0].value + T::of(base[0]);
                }
            }
            1 => {
                scores[0].value = scores[0].value + T::of(base[0]);
                second = scores[1].set;
            }
            0 => {
                add_second_class = 3;
                second = scores[1].set;
            }
            _ => {}
        }
        let positive = if second && scores[1].set {
            scores[1].value
        } else if scores[0].set {
            scores[0].value
        } else {
            T::zero()
        };
        let label = if self.binary_case {
            if self.weights_are_all_positive {
                if positive > T::of(0.5) {
                    add_second_class = 0;
                    LabelChoice::Index(1)
                } else {
                    add_second_class = 1;
                    LabelChoice::Index(0)
                }
            } else if positive > T::zero() {
                add_second_class = 2;
                LabelChoice::Index(1)
            } else {
                add_second_class = 3;
                LabelChoice::Index(0)
            }
        } else {
            // onnxruntime writes 1 / 0 (not the labels) in this case
            let positive = positive > T::zero();
            match (&self.labels, positive) {
                (ClassLabels::Ints(_), true) => LabelChoice::Raw(1),
                (ClassLabels::Ints(_), false) => LabelChoice::Raw(0),
                (ClassLabels::Strings(_), true) => LabelChoice::Index(1),
                (ClassLabels::Strings(_), false) => LabelChoice::Index(0),
            }
        };
        // like onnxruntime, scores no tree contributed to are written as 0 (base values included)
        if second {
            out[0] = scores[0].or_zero().to_f32();
            out[1] = scores[1].or_zero().to_f32();
            pt.apply_row(out);
        } else {
            let s = scores[0].or_zero().to_f32();
            if pt == PostTransform::Probit {
                out[0] = probit(s);
                out[1] = 0.0;
            } else {
                match add_second_class {
                    0 | 1 => {
                        let p = if pt == PostTransform::Logistic { logistic(s) } else { s };
                        out[0] = 1.0 - p;
                        out[1] = p;
                    }
                    2 | 3 => {
                        if pt == PostTransform::Logistic {
                            out[0] = logistic(-s);
                            out[1] = logistic(s);
                        } else {
                            out[0] = -s;
                            out[1] = s;
                        }
                    }
                    _ => {
                        out[0] = s;
                        out[1] = 0.0;
                    }
                }
            }
        }
        label
    }

    fn eval_t<T: Acc + Datum>(&self, input: &Tensor) -> TractResult<(Vec<LabelChoice>, Tensor)> {
        let e = &self.ensemble;
        let (rows, f, x) = input_rows::<T>("TreeEnsembleClassifier", e, input)?;
        let classes = self.labels.len();
        let mut out = vec![0f32; rows * classes];
        let mut labels = Vec::with_capacity(rows);
        for (r, out_row) in out.chunks_mut(classes).enumerate() {
            let xr = &x[r * f..(r + 1) * f];
            let mut scores = vec![Score::<T>::new(); classes];
            for &root in &e.roots {
                for &(c, w) in e.leaf_weights(e.leaf(root, xr)) {
                    scores[c].value = scores[c].value + T::of(w);
                    scores[c].set = true;
                }
            }
            labels.push(self.finalize(scores, out_row));
        }
        Ok((labels, tensor_from_vec(&[rows, classes], out)?))
    }
}

impl Op for TreeEnsembleClassifier {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifier".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} trees, {} nodes, {} classes, binary case: {}, post_transform: {:?}",
            self.ensemble.roots.len(),
            self.ensemble.nodes.len(),
            self.labels.len(),
            self.binary_case,
            self.ensemble.post_transform
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleClassifier {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (labels, scores) = if input.datum_type() == DatumType::F64 { self.eval_t::<f64>(&input)? } else { self.eval_t::<f32>(&input)? };
        Ok(tvec!(self.labels.output(&labels)?.into_tvalue(), scores.into_tvalue()))
    }
}

impl TypedOp for TreeEnsembleClassifier {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = check_input_fact("TreeEnsembleClassifier", &self.ensemble, inputs[0])?;
        Ok(tvec!(self.labels.datum_type().fact([rows.clone()]), f32::fact([rows, self.labels.len().to_dim()])))
    }

    as_op!();
}

impl MlOp for TreeEnsembleClassifier {
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
        s.equals(&outputs[1].shape[1], self.labels.len().to_dim())
    }
}
