#!/usr/bin/env python3
"""Generates the batching benchmark's model repository: a compute-bound MLP, served twice.

    target/pyenv/bin/python benches/models/generate_mlp.py target/bench-models

The model (4,213,776 parameters, FP32, ~17 MB, so it is generated rather than committed):

    input [-1, 1024] -> Gemm 1024x2048 -> Relu -> Gemm 2048x1024 -> Relu -> Gemm 1024x16
                     -> output [-1, 16]

At batch 1 each row streams all 17 MB of weights through matrix-vector products; at batch 32
the same weights serve 32 rows in matrix-matrix products, so rows/s rises steeply with the
batch size: the shape of model where dynamic batching pays.

Three models share the file, all with instance_group [{ count: 1, kind: KIND_CPU }]:
  mlp4m_batched       max_batch_size 32, dynamic_batching { max_queue_delay_microseconds: 2000 }
                      (preferred size defaults to the max, 32)
  mlp4m_unbatched     max_batch_size 0, dims [1, 1024] -> [1, 16]: the model does not batch,
                      so every request executes alone (batching off, in Triton and Quiver)
  mlp4m_default_scheduler
                      max_batch_size 32 and no scheduler block: Triton's default scheduler,
                      each request executes alone (batching off for the same batching model;
                      auto-complete adds `dynamic_batching {}` only when it chose the batch size)

Deterministic: fixed seed, opset 15, no timestamps; re-running rewrites identical bytes.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ONNX_OPSET = 15
IR_VERSION = 8  # the IR version that goes with opset 15
SEED = 20240611
LAYERS = [1024, 2048, 1024, 16]  # input width, then each Gemm's output width
MAX_BATCH_SIZE = 32
MAX_QUEUE_DELAY_US = 2000

INSTANCE = "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
BATCHED_IO = f"""\
input [ {{ name: "input" data_type: TYPE_FP32 dims: [ {LAYERS[0]} ] }} ]
output [ {{ name: "output" data_type: TYPE_FP32 dims: [ {LAYERS[-1]} ] }} ]
"""
# max_batch_size 0: the shapes are full shapes, and a fixed leading 1 makes each request one row.
SINGLE_ROW_IO = f"""\
input [ {{ name: "input" data_type: TYPE_FP32 dims: [ 1, {LAYERS[0]} ] }} ]
output [ {{ name: "output" data_type: TYPE_FP32 dims: [ 1, {LAYERS[-1]} ] }} ]
"""


def config(name: str, max_batch_size: int, io: str, scheduler: str = "") -> str:
    return f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n' + io + INSTANCE + scheduler


CONFIGS = {
    "mlp4m_batched": config("mlp4m_batched", MAX_BATCH_SIZE, BATCHED_IO,
                            f"dynamic_batching {{ max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US} }}\n"),
    "mlp4m_unbatched": config("mlp4m_unbatched", 0, SINGLE_ROW_IO),
    "mlp4m_default_scheduler": config("mlp4m_default_scheduler", MAX_BATCH_SIZE, BATCHED_IO),
}


def build_mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(SEED)
    inits = []
    nodes = []
    current = "input"
    last = len(LAYERS) - 2
    for i, (fan_in, fan_out) in enumerate(zip(LAYERS, LAYERS[1:])):
        weight = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        bias = (0.01 * rng.standard_normal(fan_out)).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"fc{i}.weight"), numpy_helper.from_array(bias, f"fc{i}.bias")]
        gemm_out = "output" if i == last else f"fc{i}"
        nodes.append(helper.make_node("Gemm", [current, f"fc{i}.weight", f"fc{i}.bias"], [gemm_out], name=f"fc{i}"))
        if i == last:
            break
        nodes.append(helper.make_node("Relu", [gemm_out], [f"relu{i}"], name=f"relu{i}"))
        current = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "mlp4m",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", LAYERS[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", LAYERS[-1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="quiver-benches", producer_version="1")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def parameter_count(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", type=Path, help="model repository to write (created if missing)")
    args = parser.parse_args()
    model = build_mlp()
    data = model.SerializeToString()
    for name, config in CONFIGS.items():
        directory = args.repository / name
        if directory.exists():
            shutil.rmtree(directory)
        (directory / "1").mkdir(parents=True)
        (directory / "1" / "model.onnx").write_bytes(data)
        (directory / "config.pbtxt").write_text(config)
    print(f"wrote {', '.join(CONFIGS)} to {args.repository} "
          f"({parameter_count(model):,} parameters, {len(data) / 1e6:.1f} MB each)")


if __name__ == "__main__":
    main()
