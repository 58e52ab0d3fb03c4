"""Quiver driven by Triton's own HTTP client (tritonclient.http), answers checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import assert_same, mlp_batch


def _infer(client, model, arrays: dict, *, binary=True, outputs=None, version="", request_id=""):
    inputs = []
    for name, arr in arrays.items():
        dt = "BYTES" if arr.dtype == np.object_ else {
            np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64",
        }[arr.dtype]
        i = httpclient.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(i)
    req_outputs = None
    if outputs is not None:
        req_outputs = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in outputs]
    return client.infer(
        model, inputs, model_version=version, outputs=req_outputs, request_id=request_id
    )


def test_server_live_ready_metadata(http_client):
    assert http_client.is_server_live()
    assert http_client.is_server_ready()
    md = http_client.get_server_metadata()
    assert isinstance(md["name"], str) and md["name"]
    assert isinstance(md["version"], str) and md["version"]
    assert isinstance(md["extensions"], list)


@pytest.mark.parametrize("model", ["mlp", "cnn", "iris", "gbm_regressor", "int_ops"])
def test_model_ready(http_client, model):
    assert http_client.is_model_ready(model)


def test_model_not_ready_for_unknown(http_client):
    assert not http_client.is_model_ready("no_such_model")
    assert not http_client.is_model_ready("mlp", "77")


def test_mlp_metadata(http_client):
    md = http_client.get_model_metadata("mlp")
    assert md["name"] == "mlp"
    assert {"1", "2"} <= set(md.get("versions", [])), md
    assert md["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}]
    assert md["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 4]}]
    md1 = http_client.get_model_metadata("mlp", "1")
    assert md1["name"] == "mlp"
    assert md1["inputs"][0]["shape"] == [-1, 16]


def test_mlp_config(http_client):
    cfg = http_client.get_model_config("mlp")
    assert cfg["name"] == "mlp"
    assert cfg["max_batch_size"] == 8
    assert cfg["input"][0]["name"] == "input"
    assert cfg["input"][0]["data_type"] == "TYPE_FP32"
    assert [int(d) for d in cfg["input"][0]["dims"]] == [16]
    assert cfg["output"][0]["name"] == "probabilities"
    assert [int(d) for d in cfg["output"][0]["dims"]] == [4]
    assert "dynamic_batching" in cfg


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_mlp_infer(http_client, reference, binary, rows):
    x = mlp_batch(rows, seed=rows)
    res = _infer(http_client, "mlp", {"input": x}, binary=binary, outputs=["probabilities"])
    assert_same(res.as_numpy("probabilities"), reference.run("mlp", {"input": x}, 2)["probabilities"])
    resp = res.get_response()
    assert resp["model_name"] == "mlp"
    out = resp["outputs"][0]
    assert out["datatype"] == "FP32" and out["shape"] == [rows, 4]
    if binary:
        assert out["parameters"]["binary_data_size"] == rows * 4 * 4
        assert "data" not in out
    else:
        assert "data" in out and "binary_data_size" not in out.get("parameters", {})


def test_mlp_infer_default_outputs_binary(http_client, reference):
    # No outputs requested: tritonclient asks for binary_data_output and gets every output.
    x = mlp_batch(4, seed=5)
    res = _infer(http_client, "mlp", {"input": x}, binary=True)
    assert_same(res.as_numpy("probabilities"), reference.run("mlp", {"input": x}, 2)["probabilities"])


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_mlp_versions_differ_and_match_onnxruntime(http_client, reference, binary):
    x = mlp_batch(5, seed=42)
    results = {}
    for v in ("1", "2"):
        res = _infer(http_client, "mlp", {"input": x}, binary=binary, version=v)
        assert res.get_response()["model_version"] == v
        results[v] = res.as_numpy("probabilities")
        assert_same(results[v], reference.run("mlp", {"input": x}, v)["probabilities"], f"mlp v{v}")
    assert not np.allclose(results["1"], results["2"], atol=1e-3), "v1 and v2 answered the same"
    # No version: the latest (2) answers.
    res = _infer(http_client, "mlp", {"input": x}, binary=binary)
    assert res.get_response().get("model_version", "2") == "2"
    assert_same(res.as_numpy("probabilities"), results["2"])


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_request_id_echoed(http_client, binary):
    res = _infer(http_client, "mlp", {"input": mlp_batch(1)}, binary=binary, request_id="req-42/é")
    assert res.get_response()["id"] == "req-42/é"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_iris_outputs_subset(http_client, reference, binary):
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3],
                  [5.0, 2.0, 3.5, 1.0], [6.0, 3.0, 4.8, 1.8]], dtype=np.float32)
    ref = reference.run("iris", {"input": x})
    # Only probabilities.
    res = _infer(http_client, "iris", {"input": x}, binary=binary, outputs=["probabilities"])
    names = [o["name"] for o in res.get_response()["outputs"]]
    assert names == ["probabilities"]
    assert res.as_numpy("label") is None
    assert_same(res.as_numpy("probabilities"), ref["probabilities"], "probabilities")
    # Only label.
    res = _infer(http_client, "iris", {"input": x}, binary=binary, outputs=["label"])
    assert [o["name"] for o in res.get_response()["outputs"]] == ["label"]
    label = res.as_numpy("label")
    assert label.dtype == np.int64
    assert_same(label, ref["label"], "label")
    assert list(ref["label"][:3]) == [0, 1, 2]  # sanity of the reference itself
    # Everything.
    res = _infer(http_client, "iris", {"input": x}, binary=binary)
    assert {o["name"] for o in res.get_response()["outputs"]} == {"label", "probabilities"}
    assert_same(res.as_numpy("label"), ref["label"], "label")
    assert_same(res.as_numpy("probabilities"), ref["probabilities"], "probabilities")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_cnn_infer(http_client, reference, binary):
    x = np.random.default_rng(7).standard_normal((3, 1, 8, 8)).astype(np.float32)
    res = _infer(http_client, "cnn", {"image": x}, binary=binary)
    assert_same(res.as_numpy("probabilities"), reference.run("cnn", {"image": x})["probabilities"])


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_gbm_regressor_infer(http_client, reference, binary):
    x = (2 * np.random.default_rng(8).standard_normal((4, 5))).astype(np.float32)
    res = _infer(http_client, "gbm_regressor", {"input": x}, binary=binary)
    assert_same(res.as_numpy("variable"), reference.run("gbm_regressor", {"input": x})["variable"])


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_int64_model(http_client, reference, binary):
    x = np.array([[0, 1, -2, 3], [2**40, -(2**40), 123456789, -1]], dtype=np.int64)
    res = _infer(http_client, "int_ops", {"x": x}, binary=binary)
    ref = reference.run("int_ops", {"x": x})
    y = res.as_numpy("y")
    assert y.dtype == np.int64
    assert_same(y, ref["y"], "y")
    assert_same(res.as_numpy("half"), ref["half"], "half")


def test_unknown_model_raises(http_client):
    with pytest.raises(InferenceServerException) as e:
        _infer(http_client, "no_such_model", {"input": mlp_batch(1)})
    assert e.value.status() == "404"
    assert e.value.message() and "exception occurred in the client" not in e.value.message()
