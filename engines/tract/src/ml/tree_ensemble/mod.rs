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
//!
//! This module holds the trees (parsing, validation, evaluation of one row) and the accumulators
//! both operators share; `regressor` and `classifier` hold the operators.

use super::common::*;
use std::collections::HashMap;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

mod classifier;
mod regressor;
#[cfg(test)]
mod tests;

pub use classifier::{build_classifier, TreeEnsembleClassifier};
pub use regressor::{build_regressor, Aggregate, TreeEnsembleRegressor};

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

fn check_input_fact(op: &str, e: &TreeEnsemble, fact: &TypedFact) -> TractResult<TDim> {
    ensure_numeric_input(op, fact.datum_type)?;
    let (rows, features) = rows_and_features_dims(op, fact)?;
    if let Ok(f) = features.to_usize() {
        e.check_features(op, f)?;
    }
    Ok(rows)
}
