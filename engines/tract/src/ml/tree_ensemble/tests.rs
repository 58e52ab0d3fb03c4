//! Evaluation of small hand-built ensembles.

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
