#!/usr/bin/env python3
"""Generates Quiver's example model repository (Triton layout) next to this file.

    target/pyenv/bin/python deploy/models/generate.py            # writes deploy/models/<model>/...
    target/pyenv/bin/python deploy/models/generate.py --out DIR  # writes DIR/<model>/...

Deterministic: fixed seeds, fixed opsets, no timestamps, so re-running it rewrites identical bytes.
Each model directory is deleted and rewritten; files outside the model directories are left alone.

Layout: <repo>/<model>/<version>/model.onnx, plus an optional <repo>/<model>/config.pbtxt.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ONNX_OPSET = 15  # ai.onnx opset of every model (tract and onnxruntime both handle 13..17)
ML_OPSET = 3  # ai.onnx.ml opset of the scikit-learn models
IR_VERSION = 8  # the IR version that goes with opset 15

HERE = Path(__file__).resolve().parent


def _finish(graph: onnx.GraphProto, opsets: dict[str, int] | None = None) -> onnx.ModelProto:
    opsets = opsets or {"": ONNX_OPSET}
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
        producer_name="quiver-generate",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name=name)


def build_mlp(seed: int) -> onnx.ModelProto:
    """input [batch, 16] FP32 -> Gemm(16x32) -> Relu -> Gemm(32x16) -> Relu -> MatMul(16x4)+Add
    -> Softmax -> probabilities [batch, 4] FP32."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)

    def b(n: int) -> np.ndarray:
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    inits = [
        _init("fc1.weight", w(16, 32)),
        _init("fc1.bias", b(32)),
        # fc2 is stored transposed ([out, in]) and used with transB=1, as PyTorch exports do.
        _init("fc2.weight", np.ascontiguousarray(w(32, 16).T)),
        _init("fc2.bias", b(16)),
        _init("fc3.weight", w(16, 4)),
        _init("fc3.bias", b(4)),
    ]
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "fc2.weight", "fc2.bias"], ["h2"], name="fc2", transB=1),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("MatMul", ["a2", "fc3.weight"], ["h3"], name="fc3_matmul"),
        helper.make_node("Add", ["h3", "fc3.bias"], ["logits"], name="fc3_add"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 4])],
        initializer=inits,
    )
    return _finish(graph)


MLP_CONFIG = """\
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: { all { } }
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 16 ]
  }
]
output [
  {
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { }
"""


def build_cnn(seed: int) -> onnx.ModelProto:
    """image [batch, 1, 8, 8] FP32 -> Conv(4, 3x3, pad 1) -> Relu -> MaxPool(2x2) -> Conv(8, 3x3,
    pad 1) -> Relu -> AveragePool(2x2) -> Flatten -> Gemm(32x10) -> Softmax -> probabilities
    [batch, 10] FP32."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("conv1.weight", (0.5 * rng.standard_normal((4, 1, 3, 3))).astype(np.float32)),
        _init("conv1.bias", (0.1 * rng.standard_normal(4)).astype(np.float32)),
        _init("conv2.weight", (0.3 * rng.standard_normal((8, 4, 3, 3))).astype(np.float32)),
        _init("conv2.bias", (0.1 * rng.standard_normal(8)).astype(np.float32)),
        _init("fc.weight", (0.3 * rng.standard_normal((10, 32))).astype(np.float32)),
        _init("fc.bias", (0.1 * rng.standard_normal(10)).astype(np.float32)),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["image", "conv1.weight", "conv1.bias"], ["c1"], name="conv1",
            kernel_shape=[3, 3], pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2",
            kernel_shape=[3, 3], pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node(
            "AveragePool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["p2"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    return _finish(graph)


def build_int_ops() -> onnx.ModelProto:
    """x [batch, 4] INT64 -> y = 3*x + 7 [batch, 4] INT64, and half = float(x) / 2 [batch, 4] FP32."""
    inits = [
        _init("three", np.array([3], dtype=np.int64)),
        _init("seven", np.array([7], dtype=np.int64)),
        _init("half_const", np.array([0.5], dtype=np.float32)),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "three"], ["x3"], name="mul"),
        helper.make_node("Add", ["x3", "seven"], ["y"], name="add"),
        helper.make_node("Cast", ["x"], ["xf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xf", "half_const"], ["half"], name="halve"),
    ]
    graph = helper.make_graph(
        nodes,
        "int_ops",
        [helper.make_tensor_value_info("x", TensorProto.INT64, ["batch", 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.INT64, ["batch", 4]),
            helper.make_tensor_value_info("half", TensorProto.FLOAT, ["batch", 4]),
        ],
        initializer=inits,
    )
    return _finish(graph)


def dedupe_opsets(model: onnx.ModelProto) -> onnx.ModelProto:
    """Keeps one opset import per domain (the highest version); converters may list one twice."""
    opsets: dict[str, int] = {}
    for o in model.opset_import:
        opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(opsets.items()))
    return model


def skl_to_onnx(estimator, n_features: int, name: str, options=None) -> onnx.ModelProto:
    """Converts a fitted scikit-learn estimator with one FP32 input `input` [N, n_features]."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    model = to_onnx(
        estimator,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        target_opset={"": ONNX_OPSET, "ai.onnx.ml": ML_OPSET},
        options=options,
        naming=name,
    )
    model.graph.name = name
    dedupe_opsets(model)
    model.producer_name = "quiver-generate"
    model.producer_version = "1"
    onnx.checker.check_model(model, full_check=True)
    return model


def build_iris() -> onnx.ModelProto:
    """StandardScaler + LogisticRegression on sklearn's bundled iris data.
    input [N, 4] FP32 -> label [N] INT64, probabilities [N, 3] FP32."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=1000, random_state=0)
    pipe = Pipeline([("scaler", StandardScaler()), ("clf", clf)])
    pipe.fit(x.astype(np.float32), y)
    return skl_to_onnx(pipe, 4, "iris", options={id(clf): {"zipmap": False}})


# iris does not batch (max_batch_size 0): its dims include the variable first dimension.
IRIS_CONFIG = """\
name: "iris"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ -1, 4 ]
  }
]
output [
  {
    name: "label"
    data_type: TYPE_INT64
    dims: [ -1 ]
  },
  {
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ -1, 3 ]
  }
]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def build_gbm_regressor() -> onnx.ModelProto:
    """GradientBoostingRegressor (20 trees, depth 3) on a synthetic 5-feature regression set.
    input [N, 5] FP32 -> variable [N, 1] FP32 (ai.onnx.ml TreeEnsembleRegressor)."""
    from sklearn.datasets import make_regression
    from sklearn.ensemble import GradientBoostingRegressor

    x, y = make_regression(n_samples=300, n_features=5, noise=0.5, random_state=0)
    reg = GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0)
    reg.fit(x.astype(np.float32), y)
    return skl_to_onnx(reg, 5, "gbm_regressor")


def write_model(repo: Path, name: str, versions: dict[int, onnx.ModelProto], config: str | None):
    d = repo / name
    if d.exists():
        shutil.rmtree(d)
    for version, model in versions.items():
        (d / str(version)).mkdir(parents=True)
        (d / str(version) / "model.onnx").write_bytes(model.SerializeToString())
    if config is not None:
        (d / "config.pbtxt").write_text(config)


def generate(repo: Path) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    write_model(repo, "mlp", {1: build_mlp(seed=1), 2: build_mlp(seed=2)}, MLP_CONFIG)
    write_model(repo, "cnn", {1: build_cnn(seed=3)}, None)
    write_model(repo, "iris", {1: build_iris()}, IRIS_CONFIG)
    write_model(repo, "gbm_regressor", {1: build_gbm_regressor()}, None)
    write_model(repo, "int_ops", {1: build_int_ops()}, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE, help="repository directory (default: here)")
    args = ap.parse_args()
    generate(args.out)
    for p in sorted(args.out.rglob("*")):
        if p.is_file() and p.suffix in (".onnx", ".pbtxt"):
            print(f"{p.stat().st_size:>8}  {p.relative_to(args.out)}")


if __name__ == "__main__":
    main()
