"""Repositories and models of the model-lifecycle tests (test_lifecycle.py): copies of the shipped
`mlp` with chosen versions and config additions, and `flaky`, a model whose version 2 fails at run
time (in the backend, not at input validation) for short inputs while version 1 always works."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from conftest import DEPLOY_MODELS

MLP_CONFIG = (DEPLOY_MODELS / "mlp" / "config.pbtxt").read_text()

# Triton's model_warmup: one batch of 2 zero rows of the mlp input.
MLP_WARMUP = (
    'model_warmup [ { name: "w" batch_size: 2 inputs { key: "input" value: '
    "{ data_type: TYPE_FP32 dims: [ %d ] zero_data: true } } } ]\n"
)


def param(key: str, value) -> str:
    """One config.pbtxt `parameters` entry."""
    return f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}\n'


def mlp_repo(dest: Path, versions=(1,), extra_config: str = "", models=("mlp",)) -> Path:
    """`dest` with deploy/models' mlp (only `versions`, config.pbtxt + `extra_config`; its
    version_policy is `all`) and the other shipped `models` as they are."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in models:
        if name != "mlp":
            shutil.copytree(DEPLOY_MODELS / name, dest / name)
    for v in versions:
        add_mlp_version(dest, v)
    (dest / "mlp" / "config.pbtxt").write_text(MLP_CONFIG + extra_config)
    return dest


def add_mlp_version(repo: Path, version: int, source: int | None = None) -> Path:
    """Copies deploy/models/mlp/<source or version>/ to repo/mlp/<version>/."""
    src = DEPLOY_MODELS / "mlp" / str(source or version)
    dst = repo / "mlp" / str(version)
    shutil.copytree(src, dst)
    return dst


def mlp_config_json(versions=None, **extra) -> dict:
    """A full mlp config in the JSON form of the load API's `config` parameter (it replaces
    config.pbtxt for that load, so it repeats what the tests rely on)."""
    cfg = {
        "name": "mlp",
        "platform": "onnxruntime_onnx",
        "max_batch_size": 8,
        "version_policy": {"specific": {"versions": list(versions)}} if versions else {"all": {}},
        "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [16]}],
        "output": [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [4]}],
        "dynamic_batching": {},
    }
    cfg.update(extra)
    return cfg


# ------------------------------------------------------------------------------------- flaky

FLAKY_IO = """\
max_batch_size: 0
version_policy: { all { } }
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""


def _model(nodes, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "flaky",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_flaky_stable() -> onnx.ModelProto:
    """y = x."""
    return _model([helper.make_node("Identity", ["x"], ["y"])])


def build_flaky_canary() -> onnx.ModelProto:
    """y = x + x[3]: fine for inputs of 4 or more elements, an execution error (HTTP 500) for
    shorter ones. (A Reshape to a fixed size would not do: the backend rejects it at load.)"""
    idx = helper.make_tensor("idx", TensorProto.INT64, [1], [3])
    return _model(
        [helper.make_node("Gather", ["x", "idx"], ["g"], axis=0),
         helper.make_node("Add", ["x", "g"], ["y"])],
        [idx],
    )


def flaky_expected(version: int, x: np.ndarray) -> np.ndarray:
    return x if version == 1 else x + x[3]


def flaky_repo(dest: Path, extra_config: str = "") -> Path:
    """`dest`/flaky with version 1 (stable) and 2 (canary)."""
    for v, build in ((1, build_flaky_stable), (2, build_flaky_canary)):
        d = dest / "flaky" / str(v)
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.onnx").write_bytes(build().SerializeToString())
    (dest / "flaky" / "config.pbtxt").write_text(FLAKY_IO + extra_config)
    return dest
