#!/usr/bin/env python3
"""Generates an MNIST-class CNN for the ONNX engine comparison (benches/onnxruntime.sh).

    target/pyenv/bin/python benches/models/generate_cnn.py target/bench-models

    image [-1, 1, 28, 28] -> Conv 3x3 x32 -> Relu -> Conv 3x3 x64 -> Relu -> MaxPool 2x2
          -> Flatten -> Gemm 9216x128 -> Relu -> Gemm 128x10 -> Softmax -> probabilities [-1, 10]

About 12 M multiply-adds and 1.2 M parameters per row: the shape of the Keras/PyTorch MNIST
example, where the convolutions, not per-call overhead, set the speed (deploy/models/cnn has
8x8 inputs and a few thousand multiply-adds). Writes cnn_mnist/1/model.onnx and a config with
dynamic batching. Random weights, fixed seed: deterministic bytes.
"""
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main() -> None:
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench-models") / "cnn_mnist"
    rng = np.random.default_rng(7)

    def weight(name, *shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name)

    init = [
        weight("c1w", 32, 1, 3, 3), numpy_helper.from_array(np.zeros(32, np.float32), "c1b"),
        weight("c2w", 64, 32, 3, 3), numpy_helper.from_array(np.zeros(64, np.float32), "c2b"),
        weight("f1w", 9216, 128), numpy_helper.from_array(np.zeros(128, np.float32), "f1b"),
        weight("f2w", 128, 10), numpy_helper.from_array(np.zeros(10, np.float32), "f2b"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "c1w", "c1b"], ["c1"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "c2w", "c2b"], ["c2"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "f1w", "f1b"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "f2w", "f2b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "cnn_mnist",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], producer_name="quiver-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    (out / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "1" / "model.onnx"))
    (out / "config.pbtxt").write_text(
        'name: "cnn_mnist"\nmax_batch_size: 32\n'
        'instance_group [ { count: 1 kind: KIND_CPU } ]\n'
        "dynamic_batching { max_queue_delay_microseconds: 2000 }\n"
    )
    print(out / "1" / "model.onnx")


if __name__ == "__main__":
    main()
