//! `TreeEnsembleRegressor` and `TreeEnsembleClassifier` (decision trees, random forests,
//! gradient boosting: scikit-learn, LightGBM, XGBoost), following onnxruntime.
//!
//! tract-onnx ships a `TreeEnsembleClassifier` but no regressor; its classifier is replaced here
//! because it disagrees with onnxruntime on binary classifiers (the label of single-score models,
//! `base_values` of length 1 or 2, the `[−s, s]` layout), on string labels and `SOFTMAX_ZERO`.
//!
//! Float inputs (and integer ones, converted) are compared with single precision thresholds and
//! accumulated in single precision, double inputs in double precision, as onnxruntime does.
//! `*_as_tensor` attributes (double precision values) are accepted in place of their float twins.

use super::common::*;
use std::collections::{HashMap, HashSet};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Comparison of a tree node (`x[feature] <op> threshold` sends to the true branch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeMode {
    /// A leaf.
    Leaf,
    /// `<=`
    Leq,
    /// `<`
    Lt,
    /// `>=`
    Gte,
    /// `>`
    Gt,
    /// `==`
    Eq,
    /// `!=`
    Neq,
}

impl NodeMode {
    fn parse(s: &str) -> TractResult<NodeMode> {
        Ok(match s {
            "LEAF" => NodeMode::Leaf,
            "BRANCH_LEQ" => NodeMode::Leq,
            "BRANCH_LT" => NodeMode::Lt,
            "BRANCH_GTE" => NodeMode::Gte,
            "BRANCH_GT" => NodeMode::Gt,
            "BRANCH_EQ" => NodeMode::Eq,
            "BRANCH_NEQ" => NodeMode::Neq,
            other => bail!("invalid node mode '{other}'"),
        })
    }
}

/// One node of an ensemble; child and weight references are indices in the ensemble's vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeNode {
    /// Comparison, or leaf.
    pub mode: NodeMode,
    /// Feature compared.
    pub feature: usize,
    /// Threshold.
    pub threshold: f64,
    /// Next node when the comparison holds (or the value is NaN and `missing_true`).
    pub true_node: usize,
    /// Next node otherwise.
    pub false_node: usize,
    /// Whether NaN values take the true branch.
    pub missing_true: bool,
    /// First weight of a leaf in the ensemble's weights.
    pub first_weight: usize,
    /// Number of weights of a leaf.
    pub weight_count: usize,
}

/// The trees of an ensemble, with their leaf weights.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsemble {
    /// All nodes of all trees.
    pub nodes: Vec<TreeNode>,
    /// Root node of each tree.
    pub roots: Vec<usize>,
    /// `(target or class, weight)` of the leaves, grouped by leaf.
    pub weights: Vec<(usize, f64)>,
    /// Largest feature index used.
    pub max_feature: usize,
    /// `base_values` (one per target/class, or one for all).
    pub base_values: Vec<f64>,
    /// Score transform.
    pub post_transform: PostTransform,
}

/// Reads a required list of ints (or an empty list when absent).
fn ints(node: &NodeProto, name: &str) -> TractResult<Vec<i64>> {
    Ok(node.get_attr_opt_vec(name)?.unwrap_or_default())
}

/// Converts a node / tree / target id, rejecting negatives.
fn index(what: &str, v: i64) -> TractResult<usize> {
    usize::try_from(v).map_err(|_| format_err!("negative {what}: {v}"))
}

impl TreeEnsemble {
    /// Parses the `nodes_*` attributes and the `<leaf_prefix>_*` leaf attributes; target / class
    /// ids must be lower than `outputs`.
    fn parse(ctx: &ParsingContext, node: &NodeProto, leaf_prefix: &str, outputs: usize) -> TractResult<TreeEnsemble> {
        let tree_ids = ints(node, "nodes_treeids")?;
        let node_ids = ints(node, "nodes_nodeids")?;
        let feature_ids = ints(node, "nodes_featureids")?;
        let true_ids = ints(node, "nodes_truenodeids")?;
        let false_ids = ints(node, "nodes_falsenodeids")?;
        let missing: Vec<i64> = ints(node, "nodes_missing_value_tracks_true")?;
        let modes: Vec<String> = node.get_attr_opt_vec("nodes_modes")?.unwrap_or_default();
        let values = floats_or_tensor(ctx, node, "nodes_values")?.unwrap_or_default();
        let n = tree_ids.len();
        ensure!(n > 0, "the ensemble has no node ('nodes_treeids' is empty)");
        for (name, len) in [
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", feature_ids.len()),
            ("nodes_truenodeids", true_ids.len()),
            ("nodes_falsenodeids", false_ids.len()),
            ("nodes_modes", modes.len()),
            ("nodes_values", values.len()),
        ] {
            ensure!(len == n, "'{name}' has {len} values, 'nodes_treeids' has {n}");
        }
        ensure!(missing.len() <= n, "'nodes_missing_value_tracks_true' has more values than nodes");

        let mut by_id = HashMap::<(usize, usize), usize>::with_capacity(n);
        let mut nodes = Vec::with_capacity(n);
        let mut roots = vec![];
        let mut previous_tree = None;
        let mut max_feature = 0;
        for i in 0..n {
            let tree = index("tree id", tree_ids[i])?;
            let id = index("node id", node_ids[i])?;
            ensure!(by_id.insert((tree, id), i).is_none(), "node {id} of tree {tree} is defined twice");
            if previous_tree != Some(tree) {
                roots.push(i);
                previous_tree = Some(tree);
            }
            let mode = NodeMode::parse(&modes[i])?;
            let feature = index("feature id", feature_ids[i])?;
            if mode != NodeMode::Leaf {
                max_feature = max_feature.max(feature);
            }
            nodes.push(TreeNode {
                mode,
                feature,
                threshold: values[i],
                true_node: 0,
                false_node: 0,
                missing_true: missing.get(i) == Some(&1),
                first_weight: 0,
                weight_count: 0,
            });
        }
        for i in 0..n {
            if nodes[i].mode == NodeMode::Leaf {
                continue;
            }
            let tree = tree_ids[i] as usize;
            let find = |child: i64, which: &str| -> TractResult<usize> {
                let child_ix = usize::try_from(child)
                    .ok()
                    .and_then(|c| by_id.get(&(tree, c)).copied())
                    .with_context(|| format!("node {} of tree {tree}: {which} node {child} does not exist", node_ids[i]))?;
                ensure!(child_ix != i, "node {} of tree {tree} points to itself", node_ids[i]);
                Ok(child_ix)
            };
            nodes[i].true_node = find(true_ids[i], "true")?;
            nodes[i].false_node = find(false_ids[i], "false")?;
        }

        let attr = |name: &str| format!("{leaf_prefix}_{name}");
        let leaf_trees = ints(node, &attr("treeids"))?;
        let leaf_nodes = ints(node, &attr("nodeids"))?;
        let leaf_targets = ints(node, &attr("ids"))?;
        let leaf_weights = floats_or_tensor(ctx, node, &attr("weights"))?.unwrap_or_default();
        let l = leaf_targets.len();
        for (name, len) in [("treeids", leaf_trees.len()), ("nodeids", leaf_nodes.len()), ("weights", leaf_weights.len())] {
            ensure!(len == l, "'{}' has {len} values, '{}' has {l}", attr(name), attr("ids"));
        }
        let mut order: Vec<usize> = (0..l).collect();
        order.sort_by_key(|&i| (leaf_trees[i], leaf_nodes[i], i));
        let mut weights = Vec::with_capacity(l);
        for i in order {
            let (tree, id) = (index("tree id", leaf_trees[i])?, index("node id", leaf_nodes[i])?);
            let target = index("target id", leaf_targets[i])?;
            ensure!(target < outputs, "leaf {id} of tree {tree} contributes to output {target}, but there are {outputs}");
            let ix = *by_id.get(&(tree, id)).with_context(|| format!("weight for node {id} of tree {tree}, which does not exist"))?;
            let leaf = &mut nodes[ix];
            if leaf.mode != NodeMode::Leaf {
                // onnxruntime ignores those (older onnxmltools versions emitted them)
                continue;
            }
            if leaf.weight_count == 0 {
                leaf.first_weight = weights.len();
            }
            leaf.weight_count += 1;
            weights.push((target, leaf_weights[i]));
        }
        for (i, n) in nodes.iter().enumerate() {
            ensure!(n.mode != NodeMode::Leaf || n.weight_count > 0, "leaf {} of tree {} has no weight", node_ids[i], tree_ids[i]);
        }
        check_acyclic(&nodes)?;
        let base_values = floats_or_tensor(ctx, node, "base_values")?.unwrap_or_default();
        let post_transform = PostTransform::parse(node)?;
        Ok(TreeEnsemble { nodes, roots, weights, max_feature, base_values, post_transform })
    }

    /// Index of the leaf reached by row `x` from `root`.
    fn leaf<T: Acc>(&self, root: usize, x: &[T]) -> usize {
        let mut ix = root;
        loop {
            let node = &self.nodes[ix];
            let v = x[node.feature];
            let t = T::of(node.threshold);
            let go_true = match node.mode {
                NodeMode::Leaf => return ix,
                NodeMode::Leq => v <= t,
                NodeMode::Lt => v < t,
                NodeMode::Gte => v >= t,
                NodeMode::Gt => v > t,
                NodeMode::Eq => v == t,
                NodeMode::Neq => v != t,
            } || (node.missing_true && v.is_nan());
            ix = if go_true { node.true_node } else { node.false_node };
        }
    }

    fn leaf_weights(&self, leaf: usize) -> &[(usize, f64)] {
        let n = &self.nodes[leaf];
        &self.weights[n.first_weight..n.first_weight + n.weight_count]
    }

    fn check_features(&self, op: &str, features: usize) -> TractResult<()> {
        ensure!(self.max_feature < features, "{op}: the trees read feature {}, but the input has {features} features", self.max_feature);
        Ok(())
    }
}

/// Rejects ensembles whose trees loop (which would make evaluation run forever).
fn check_acyclic(nodes: &[TreeNode]) -> TractResult<()> {
    // 0: unvisited, 1: on the current path, 2: done
    let mut state = vec![0u8; nodes.len()];
    for start in 0..nodes.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, false)];
        while let Some((ix, children_done)) = stack.pop() {
            if children_done {
                state[ix] = 2;
                continue;
            }
            match state[ix] {
                2 => continue,
                1 => bail!("the trees contain a cycle"),
                _ => {}
            }
            state[ix] = 1;
            stack.push((ix, true));
            let n = &nodes[ix];
            if n.mode != NodeMode::Leaf {
                for child in [n.true_node, n.false_node] {
                    match state[child] {
                        1 => bail!("the trees contain a cycle"),
                        0 => stack.push((child, false)),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

/// Accumulator type: `f32` for float (and integer) inputs, `f64` for double inputs.
trait Acc: Copy + PartialOrd + std::ops::Add<Output = Self> + std::ops::Div<Output = Self> + std::ops::Neg<Output = Self> + 'static {
    fn of(v: f64) -> Self;
    fn count(n: usize) -> Self;
    fn to_f32(self) -> f32;
    fn is_nan(self) -> bool;
    fn zero() -> Self {
        Self::of(0.0)
    }
}

impl Acc for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn count(n: usize) -> Self {
        n as f32
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Acc for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn count(n: usize) -> Self {
        n as f64
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// A score being accumulated, and whether any tree contributed to it.
#[derive(Debug, Clone, Copy)]
struct Score<T> {
    value: T,
    set: bool,
}

impl<T: Acc> Score<T> {
    fn new() -> Self {
        Score { value: T::zero(), set: false }
    }

    fn or_zero(self) -> T {
        if self.set {
            self.value
        } else {
            T::zero()
        }
    }
}

/// Reads the input as rows of `T`, checking the features the trees use.
fn input_rows<T: Acc + Datum>(op: &str, e: &TreeEnsemble, input: &Tensor) -> TractResult<(usize, usize, Vec<T>)> {
    ensure_numeric_input(op, input.datum_type())?;
    let (rows, features) = rows_and_features(op, input.shape())?;
    e.check_features(op, features)?;
    let x = as_plain_int(input)?;
    let x = x.cast_to::<T>()?;
    Ok((rows, features, x.try_as_plain_ram()?.as_slice::<T>()?.to_vec()))
}

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

fn check_input_fact(op: &str, e: &TreeEnsemble, fact: &TypedFact) -> TractResult<TDim> {
    ensure_numeric_input(op, fact.datum_type)?;
    let (rows, features) = rows_and_features_dims(op, fact)?;
    if let Ok(f) = features.to_usize() {
        e.check_features(op, f)?;
    }
    Ok(rows)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(mode: NodeMode, feature: usize, threshold: f64, t: usize, f: usize) -> TreeNode {
        TreeNode { mode, feature, threshold, true_node: t, false_node: f, missing_true: false, first_weight: 0, weight_count: 0 }
    }

    fn leaf(first_weight: usize) -> TreeNode {
        TreeNode { first_weight, weight_count: 1, ..node(NodeMode::Leaf, 0, 0.0, 0, 0) }
    }

    /// One stump: x[0] <= 0.5 ? 1.0 : 3.0, then a second: x[1] < 0 ? -1 : 1 (NaN goes true).
    fn ensemble() -> TreeEnsemble {
        let mut second = node(NodeMode::Lt, 1, 0.0, 4, 5);
        second.missing_true = true;
        TreeEnsemble {
            nodes: vec![node(NodeMode::Leq, 0, 0.5, 1, 2), leaf(0), leaf(1), second, leaf(2), leaf(3)],
            roots: vec![0, 3],
            weights: vec![(0, 1.0), (0, 3.0), (0, -1.0), (0, 1.0)],
            max_feature: 1,
            base_values: vec![],
            post_transform: PostTransform::None,
        }
    }

    fn run(op: &dyn TypedOp, x: Tensor) -> TVec<Tensor> {
        op.as_op().eval_out_of_plan(tvec!(x.into_tvalue())).unwrap().unwrap().into_iter().map(|v| v.into_tensor()).collect()
    }

    #[test]
    fn regressor_aggregates() {
        let x = tensor2(&[[0f32, 1.0], [1.0, f32::NAN]]);
        let mut op = TreeEnsembleRegressor { ensemble: ensemble(), targets: 1, aggregate: Aggregate::Sum };
        assert_eq!(run(&op, x.clone())[0], tensor2(&[[2f32], [2.0]]));
        op.aggregate = Aggregate::Average;
        assert_eq!(run(&op, x.clone())[0], tensor2(&[[1f32], [1.0]]));
        op.aggregate = Aggregate::Min;
        assert_eq!(run(&op, x.clone())[0], tensor2(&[[1f32], [-1.0]]));
        op.aggregate = Aggregate::Max;
        op.ensemble.base_values = vec![0.5];
        assert_eq!(run(&op, x)[0], tensor2(&[[1.5f32], [3.5]]));
    }

    #[test]
    fn too_few_features_is_an_error() {
        let op = TreeEnsembleRegressor { ensemble: ensemble(), targets: 1, aggregate: Aggregate::Sum };
        assert!(op.output_facts(&[&f32::fact([3, 1])]).is_err());
    }

    #[test]
    fn binary_single_score_classifier() {
        let op = TreeEnsembleClassifier {
            ensemble: TreeEnsemble { post_transform: PostTransform::Logistic, ..ensemble() },
            labels: ClassLabels::Ints(vec![4, 9]),
            binary_case: true,
            weights_are_all_positive: false,
        };
        let out = run(&op, tensor2(&[[0f32, 1.0], [1.0, -1.0]]));
        assert_eq!(out[0], tensor1(&[9i64, 9]));
        let p = out[1].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
        assert!((p[1] - logistic(2.0)).abs() < 1e-6 && (p[0] + p[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn cycles_are_rejected() {
        let nodes = vec![node(NodeMode::Leq, 0, 0.0, 1, 1), node(NodeMode::Leq, 0, 0.0, 0, 0)];
        assert!(check_acyclic(&nodes).is_err());
        assert!(check_acyclic(&ensemble().nodes).is_ok());
    }
}
