""""Drop-in" models: generated into the test repository before the server starts, never committed.

Each entry of MODELS describes one model: how to build it, its input(s), and a sample batch.
The tests compare Quiver's answers with onnxruntime run on the very same model.onnx file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper



# One conversion path for shipped and test models: deploy/models/generate.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "models"))
from generate import ML_OPSET, ONNX_OPSET, dedupe_opsets, skl_to_onnx  # noqa: E402


@dataclass
class ExtraModel:
    name: str
    build: Callable[[], onnx.ModelProto]
    # input name -> function(rng, rows) -> np.ndarray (one batch of `rows` rows)
    inputs: dict[str, Callable[[np.random.Generator, int], np.ndarray]]
    rows: int = 4  # sample batch size (auto-completed configs may cap batches at 4, as Triton does)
    config: str | None = None  # config.pbtxt, or None to let the server auto-complete it
    has_nan: bool = False  # sample inputs contain NaN (cannot travel as JSON)
    outputs: list[str] = field(default_factory=list)  # filled in from the model


def _classification(n_features: int, n_classes: int, seed: int):
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=300, n_features=n_features, n_informative=min(n_features, 4), n_redundant=0,
        n_classes=n_classes, n_clusters_per_class=1, random_state=seed,
    )
    return x.astype(np.float32), y


def build_rf_classifier() -> onnx.ModelProto:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _classification(6, 3, seed=11)
    clf = RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0).fit(x, y)
    return skl_to_onnx(clf, 6, "rf_classifier", options={id(clf): {"zipmap": False}})


# The configuration Triton's onnxruntime backend writes for such a classifier: a batched rank-1
# output (shape [batch]) gets dims [1] with an empty reshape, and the API shape becomes [batch, 1].
RF_TRITON_CONFIG = """\
name: "rf_triton_config"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 6 ] } ]
output [
  { name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape: { shape: [ ] } },
  { name: "probabilities" data_type: TYPE_FP32 dims: [ 3 ] }
]
"""


def build_gb_binary() -> onnx.ModelProto:
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = _classification(5, 2, seed=12)
    clf = GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0).fit(x, y)
    return skl_to_onnx(clf, 5, "gb_binary", options={id(clf): {"zipmap": False}})


def build_linear_regressor() -> onnx.ModelProto:
    from sklearn.datasets import make_regression
    from sklearn.linear_model import LinearRegression

    x, y = make_regression(n_samples=200, n_features=8, noise=0.1, random_state=13)
    reg = LinearRegression().fit(x.astype(np.float32), y)
    return skl_to_onnx(reg, 8, "linear_regressor")


LINEAR_REGRESSOR_CONFIG = """\
name: "linear_regressor"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "input" data_type: TYPE_FP32 dims: [ 8 ] } ]
output [ { name: "variable" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def build_preproc_pipeline() -> onnx.ModelProto:
    """SimpleImputer -> StandardScaler -> Normalizer -> LogisticRegression (Imputer, Scaler,
    Normalizer, LinearClassifier in ai.onnx.ml)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    x, y = _classification(4, 3, seed=14)
    rng = np.random.default_rng(14)
    x[rng.random(x.shape) < 0.1] = np.nan
    clf = LogisticRegression(max_iter=500, random_state=0)
    pipe = Pipeline([
        ("impute", SimpleImputer(strategy="mean")),
        ("scale", StandardScaler()),
        ("norm", Normalizer(norm="l2")),
        ("clf", clf),
    ]).fit(x, y)
    return skl_to_onnx(pipe, 4, "preproc_pipeline", options={id(clf): {"zipmap": False}})


def build_lgbm_classifier() -> onnx.ModelProto:
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _classification(6, 3, seed=15)
    clf = lightgbm.LGBMClassifier(
        n_estimators=10, num_leaves=7, min_child_samples=5, random_state=0, verbose=-1,
        deterministic=True, n_jobs=1,
    ).fit(x, y)
    model = convert_lightgbm(
        clf, initial_types=[("input", FloatTensorType([None, 6]))], zipmap=False,
        target_opset=ONNX_OPSET,
    )
    return dedupe_opsets(model)


def build_xgb_regressor() -> onnx.ModelProto:
    import xgboost
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=200, n_features=5, noise=0.5, random_state=16)
    reg = xgboost.XGBRegressor(
        n_estimators=10, max_depth=3, learning_rate=0.3, random_state=0, n_jobs=1,
        base_score=0.5,
    ).fit(x.astype(np.float32), y)
    model = convert_xgboost(
        reg, initial_types=[("input", FloatTensorType([None, 5]))], target_opset=ONNX_OPSET
    )
    return dedupe_opsets(model)


def build_string_identity() -> onnx.ModelProto:
    """text [batch] BYTES -> Identity -> text_out [batch] BYTES."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["text_out"], name="identity")],
        "string_identity",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("text_out", TensorProto.STRING, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = 8
    return model


STRING_IDENTITY_CONFIG = """\
name: "string_identity"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ { name: "text" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "text_out" data_type: TYPE_STRING dims: [ -1 ] } ]
"""


def build_var_len() -> onnx.ModelProto:
    """x [batch, len] FP32 (len variable) -> total = ReduceSum(x, axis 1) [batch, 1] FP32.
    Requests of different lengths cannot share a batch."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["total"], name="sum", keepdims=1)],
        "var_len",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "len"])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch", 1])],
        initializer=[axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = 8
    return model


def build_lookup() -> onnx.ModelProto:
    """idx [batch, 2] INT64 -> val = table[idx] [batch, 2] FP32 (table = 1.5 * arange(10)).
    An index outside [-10, 9] makes the execution fail: an inference error, not a bad request."""
    from onnx import numpy_helper

    table = numpy_helper.from_array(np.arange(10, dtype=np.float32) * 1.5, "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["val"], name="gather", axis=0)],
        "lookup",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 2])],
        [helper.make_tensor_value_info("val", TensorProto.FLOAT, ["batch", 2])],
        initializer=[table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = 8
    return model


def _floats(n_features: int, scale: float = 1.5):
    def gen(rng: np.random.Generator, rows: int) -> np.ndarray:
        return (scale * rng.standard_normal((rows, n_features))).astype(np.float32)

    return gen


def _floats_with_nan(n_features: int):
    def gen(rng: np.random.Generator, rows: int) -> np.ndarray:
        x = (1.5 * rng.standard_normal((rows, n_features))).astype(np.float32)
        x[0, 1] = np.nan
        x[rows - 1, 0] = np.nan
        return x

    return gen


def _strings(rng: np.random.Generator, rows: int) -> np.ndarray:
    words = ["quiver", "", "héllo wörld", "a" * 300, "tab\tand\nnewline", "\u2603"]
    return np.array([words[i % len(words)].encode() for i in range(rows)], dtype=np.object_)


# Models whose behaviour the tests check against onnxruntime (all tabular ML drop-ins).
MODELS: list[ExtraModel] = [
    ExtraModel("rf_classifier", build_rf_classifier, {"input": _floats(6)}),
    ExtraModel("gb_binary", build_gb_binary, {"input": _floats(5)}),
    ExtraModel(
        "linear_regressor", build_linear_regressor, {"input": _floats(8)}, rows=10,
        config=LINEAR_REGRESSOR_CONFIG,
    ),
    ExtraModel(
        "preproc_pipeline", build_preproc_pipeline, {"input": _floats_with_nan(4)}, has_nan=True
    ),
    ExtraModel("lgbm_classifier", build_lgbm_classifier, {"input": _floats(6)}),
    ExtraModel("xgb_regressor", build_xgb_regressor, {"input": _floats(5)}),
]

# A BYTES-in/BYTES-out model, used by the BYTES tests (not part of the ML parametrization).
STRING_MODEL = ExtraModel(
    "string_identity", build_string_identity, {"text": _strings}, rows=6,
    config=STRING_IDENTITY_CONFIG,
)

# A model whose execution fails for some inputs (test_errors.py: inference errors are 500).
LOOKUP_MODEL = ExtraModel("lookup", build_lookup, {})

# The RandomForest again, with the config.pbtxt Triton itself would write for it (`reshape`). It is
# served by a server of its own (test_dropin.py), so that its failure cannot hide the others.
RESHAPE_MODEL = ExtraModel(
    "rf_triton_config", build_rf_classifier, {"input": _floats(6)}, rows=6, config=RF_TRITON_CONFIG
)

BY_NAME = {m.name: m for m in MODELS + [STRING_MODEL, LOOKUP_MODEL, RESHAPE_MODEL]}


def excluded() -> set[str]:
    """Models left out of the repository: QUIVER_E2E_EXCLUDE=name,name (to isolate a failure while
    debugging; the tests of an excluded model are skipped, never passed)."""
    import os

    return {n.strip() for n in os.environ.get("QUIVER_E2E_EXCLUDE", "").split(",") if n.strip()}


def generate(repo: Path, models: list[ExtraModel] | None = None) -> None:
    """Writes every extra model (version 1) into `repo`."""
    for m in models if models is not None else MODELS + [STRING_MODEL, LOOKUP_MODEL]:
        if m.name in excluded():
            continue
        model = m.build()
        onnx.checker.check_model(model)
        d = repo / m.name / "1"
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.onnx").write_bytes(model.SerializeToString())
        if m.config is not None:
            (repo / m.name / "config.pbtxt").write_text(m.config)
        m.outputs = [o.name for o in model.graph.output]
