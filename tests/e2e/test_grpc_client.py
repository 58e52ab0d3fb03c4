"""Quiver's gRPC service (inference.GRPCInferenceService) driven by tritonclient.grpc and by the
raw generated stub, answers checked against onnxruntime."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from conftest import assert_same, check_good_inference, mlp_batch, require_model

NP_TO_TRITON = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def _infer(client, model, arrays: dict, *, outputs=None, version="", request_id=""):
    inputs = []
    for name, arr in arrays.items():
        dt = "BYTES" if arr.dtype == np.object_ else NP_TO_TRITON[arr.dtype]
        i = grpcclient.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr)
        inputs.append(i)
    req_outputs = None if outputs is None else [grpcclient.InferRequestedOutput(o) for o in outputs]
    return client.infer(model, inputs, model_version=version, outputs=req_outputs,
                        request_id=request_id, client_timeout=30)


# ---------------------------------------------------------------- health and metadata


def test_live_ready(grpc_client):
    assert grpc_client.is_server_live()
    assert grpc_client.is_server_ready()
    for m in ("mlp", "cnn", "iris", "gbm_regressor", "int_ops"):
        assert grpc_client.is_model_ready(m), m
    assert grpc_client.is_model_ready("mlp", "1")
    assert grpc_client.is_model_ready("mlp", "2")


def test_server_metadata(grpc_client):
    md = grpc_client.get_server_metadata()
    assert md.name and md.version
    md_json = grpc_client.get_server_metadata(as_json=True)
    assert isinstance(md_json.get("extensions", []), list)


def test_model_metadata(grpc_client):
    md = grpc_client.get_model_metadata("mlp")
    assert md.name == "mlp"
    assert {"1", "2"} <= set(md.versions)
    assert md.platform
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("input", "FP32", [-1, 16])]
    assert [(t.name, t.datatype, list(t.shape)) for t in md.outputs] == [
        ("probabilities", "FP32", [-1, 4])
    ]
    cnn = grpc_client.get_model_metadata("cnn", as_json=True)
    assert [int(d) for d in cnn["inputs"][0]["shape"]] == [-1, 1, 8, 8]
    assert [int(d) for d in cnn["outputs"][0]["shape"]] == [-1, 10]


def test_model_config_json(grpc_client):
    cfg = grpc_client.get_model_config("mlp", as_json=True)["config"]
    assert cfg["name"] == "mlp"
    assert cfg["max_batch_size"] == 8
    assert cfg["input"][0]["name"] == "input"
    assert cfg["input"][0]["data_type"] == "TYPE_FP32"
    assert [int(d) for d in cfg["input"][0]["dims"]] == [16]
    assert cfg["output"][0]["data_type"] == "TYPE_FP32"
    assert [int(d) for d in cfg["output"][0]["dims"]] == [4]
    assert "dynamic_batching" in cfg
    groups = cfg.get("instance_group", [])
    assert groups and int(groups[0].get("count", 1)) == 1 and groups[0].get("kind") == "KIND_CPU"

    cnn = grpc_client.get_model_config("cnn", as_json=True)["config"]
    assert cnn["max_batch_size"] > 0
    assert [int(d) for d in cnn["input"][0]["dims"]] == [1, 8, 8]
    assert [int(d) for d in cnn["output"][0]["dims"]] == [10]


def test_unknown_model_metadata_not_found(grpc_stub):
    with pytest.raises(grpc.RpcError) as e:
        grpc_stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="no_such_model"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value
    with pytest.raises(grpc.RpcError) as e:
        grpc_stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="mlp", version="77"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value


# ---------------------------------------------------------------- inference with tritonclient


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_mlp_infer(grpc_client, reference, rows):
    x = mlp_batch(rows, seed=100 + rows)
    res = _infer(grpc_client, "mlp", {"input": x})
    assert_same(res.as_numpy("probabilities"), reference.run("mlp", {"input": x}, 2)["probabilities"])
    resp = res.get_response()
    assert resp.model_name == "mlp"
    assert [(o.name, o.datatype, list(o.shape)) for o in resp.outputs] == [
        ("probabilities", "FP32", [rows, 4])
    ]


def test_mlp_versions(grpc_client, reference):
    x = mlp_batch(6, seed=7)
    got = {}
    for v in ("1", "2"):
        res = _infer(grpc_client, "mlp", {"input": x}, version=v)
        assert res.get_response().model_version == v
        got[v] = res.as_numpy("probabilities")
        assert_same(got[v], reference.run("mlp", {"input": x}, v)["probabilities"], f"mlp v{v}")
    assert not np.allclose(got["1"], got["2"], atol=1e-3)


def test_request_id_and_outputs_subset(grpc_client, reference):
    x = np.array([[5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3], [6.2, 2.9, 4.3, 1.3]], np.float32)
    ref = reference.run("iris", {"input": x})
    res = _infer(grpc_client, "iris", {"input": x}, outputs=["label"], request_id="grpc-id-7")
    resp = res.get_response()
    assert resp.id == "grpc-id-7"
    assert [o.name for o in resp.outputs] == ["label"]
    assert_same(res.as_numpy("label"), ref["label"], "label")
    res = _infer(grpc_client, "iris", {"input": x}, outputs=["probabilities"])
    assert [o.name for o in res.get_response().outputs] == ["probabilities"]
    assert_same(res.as_numpy("probabilities"), ref["probabilities"], "probabilities")
    res = _infer(grpc_client, "iris", {"input": x})
    assert {o.name for o in res.get_response().outputs} == {"label", "probabilities"}


def test_cnn_gbm_int64(grpc_client, reference):
    x = np.random.default_rng(3).standard_normal((2, 1, 8, 8)).astype(np.float32)
    res = _infer(grpc_client, "cnn", {"image": x})
    assert_same(res.as_numpy("probabilities"), reference.run("cnn", {"image": x})["probabilities"])
    x = (2 * np.random.default_rng(4).standard_normal((3, 5))).astype(np.float32)
    res = _infer(grpc_client, "gbm_regressor", {"input": x})
    assert_same(res.as_numpy("variable"), reference.run("gbm_regressor", {"input": x})["variable"])
    x = np.array([[1, 2, 3, 4], [-5, 6, -(2**50), 8]], dtype=np.int64)
    res = _infer(grpc_client, "int_ops", {"x": x})
    ref = reference.run("int_ops", {"x": x})
    assert_same(res.as_numpy("y"), ref["y"], "y")
    assert_same(res.as_numpy("half"), ref["half"], "half")


def test_bytes_tensor(grpc_client, grpc_stub):
    require_model("string_identity")
    words = np.array([b"quiver", b"", "h\u00e9llo".encode(), b"z" * 500], dtype=np.object_)
    res = _infer(grpc_client, "string_identity", {"text": words})
    got = res.as_numpy("text_out")
    assert got.shape == (4,)
    assert list(got) == list(words)
    # typed bytes_contents in, raw out
    req = service_pb2.ModelInferRequest(model_name="string_identity")
    req.inputs.add(name="text", datatype="BYTES", shape=[4]).contents.bytes_contents.extend(list(words))
    resp = grpc_stub.ModelInfer(req, timeout=10)
    assert resp.outputs[0].datatype == "BYTES" and list(resp.outputs[0].shape) == [4]
    raw = resp.raw_output_contents[0] if resp.raw_output_contents else None
    if raw is not None:
        import struct
        out, pos = [], 0
        while pos < len(raw):
            (n,) = struct.unpack_from("<I", raw, pos)
            out.append(raw[pos + 4:pos + 4 + n])
            pos += 4 + n
        assert out == list(words)
    else:
        assert list(resp.outputs[0].contents.bytes_contents) == list(words)


def test_unknown_model_infer_not_found(grpc_client):
    with pytest.raises(InferenceServerException) as e:
        _infer(grpc_client, "no_such_model", {"input": mlp_batch(1)})
    assert e.value.status() == "StatusCode.NOT_FOUND", e.value
    with pytest.raises(InferenceServerException) as e:
        _infer(grpc_client, "mlp", {"input": mlp_batch(1)}, version="77")
    assert e.value.status() == "StatusCode.NOT_FOUND", e.value


# ---------------------------------------------------------------- raw stub: typed contents, errors


def _mlp_request(x: np.ndarray, *, raw=True, typed=False, version="") -> service_pb2.ModelInferRequest:
    req = service_pb2.ModelInferRequest(model_name="mlp", model_version=version)
    t = req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    if typed:
        t.contents.fp32_contents.extend(x.flatten().tolist())
    if raw:
        req.raw_input_contents.append(x.tobytes())
    return req


def _decode_outputs(resp) -> dict:
    """Decodes a ModelInferResponse; Quiver answers in raw_output_contents."""
    assert len(resp.raw_output_contents) == len(resp.outputs), (
        "expected one raw_output_contents per output"
    )
    out = {}
    for o, raw in zip(resp.outputs, resp.raw_output_contents):
        dt = {"FP32": np.float32, "INT64": np.int64}[o.datatype]
        out[o.name] = np.frombuffer(raw, dtype=dt).reshape(list(o.shape))
    return out


def test_typed_contents(grpc_stub, reference):
    x = mlp_batch(3, seed=11)
    resp = grpc_stub.ModelInfer(_mlp_request(x, raw=False, typed=True, version="1"), timeout=10)
    assert resp.model_name == "mlp" and resp.model_version == "1"
    got = _decode_outputs(resp)
    assert_same(got["probabilities"], reference.run("mlp", {"input": x}, 1)["probabilities"])

    xi = np.array([[9, -9, 0, 1]], dtype=np.int64)
    req = service_pb2.ModelInferRequest(model_name="int_ops")
    req.inputs.add(name="x", datatype="INT64", shape=[1, 4]).contents.int64_contents.extend(
        xi.flatten().tolist()
    )
    got = _decode_outputs(grpc_stub.ModelInfer(req, timeout=10))
    ref = reference.run("int_ops", {"x": xi})
    assert_same(got["y"], ref["y"], "y")
    assert_same(got["half"], ref["half"], "half")


def test_raw_contents(grpc_stub, reference):
    x = mlp_batch(2, seed=12)
    got = _decode_outputs(grpc_stub.ModelInfer(_mlp_request(x, version="2"), timeout=10))
    assert_same(got["probabilities"], reference.run("mlp", {"input": x}, 2)["probabilities"])


def _expect_code(grpc_stub, req, code, http_url, reference):
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        grpc_stub.ModelInfer(req, timeout=10)
    assert e.value.code() == code, f"expected {code}, got {e.value.code()}: {e.value.details()}"
    assert e.value.details(), "error without a message"
    assert time.monotonic() - t0 < 5
    check_good_inference(http_url, reference)
    # and gRPC still works too
    x = mlp_batch(1, seed=1)
    got = _decode_outputs(grpc_stub.ModelInfer(_mlp_request(x, version="1"), timeout=10))
    assert_same(got["probabilities"], reference.run("mlp", {"input": x}, 1)["probabilities"])


def test_raw_and_typed_together_rejected(grpc_stub, http_url, reference):
    req = _mlp_request(mlp_batch(2), raw=True, typed=True)
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


@pytest.mark.parametrize("delta", [-4, 4, -32], ids=["short", "long", "one-row-missing"])
def test_raw_wrong_length_rejected(grpc_stub, http_url, reference, delta):
    x = mlp_batch(2)
    req = _mlp_request(x, raw=False)
    raw = x.tobytes()
    req.raw_input_contents.append(raw[:delta] if delta < 0 else raw + b"\0" * delta)
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


def test_raw_count_mismatch_rejected(grpc_stub, http_url, reference):
    x = mlp_batch(1)
    req = _mlp_request(x)
    req.raw_input_contents.append(x.tobytes())  # two raw blobs for one input
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


def test_typed_wrong_count_rejected(grpc_stub, http_url, reference):
    req = _mlp_request(mlp_batch(2), raw=False, typed=False)
    req.inputs[0].contents.fp32_contents.extend([0.5] * 31)
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


def test_typed_wrong_field_rejected(grpc_stub, http_url, reference):
    # FP32 tensor whose values come in int_contents.
    req = _mlp_request(mlp_batch(1), raw=False, typed=False)
    req.inputs[0].contents.int_contents.extend([1] * 16)
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


def test_wrong_input_name_rejected(grpc_stub, http_url, reference):
    req = _mlp_request(mlp_batch(1))
    req.inputs[0].name = "nope"
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


def test_wrong_datatype_rejected(grpc_stub, http_url, reference):
    req = _mlp_request(mlp_batch(1))
    req.inputs[0].datatype = "INT32"
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


@pytest.mark.parametrize("shape", [[1099511627776], [1048576, 1048576], [-1, 16],
                                   [4294967296, 4294967296, 16], [1, 16, 0, 7]])
def test_bad_shape_rejected(grpc_stub, http_url, reference, shape):
    req = _mlp_request(mlp_batch(1), raw=True)
    del req.inputs[0].shape[:]
    req.inputs[0].shape.extend(shape)
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


def test_duplicate_input_rejected(grpc_stub, http_url, reference):
    x = mlp_batch(1)
    req = _mlp_request(x)
    req.inputs.add(name="input", datatype="FP32", shape=[1, 16])
    req.raw_input_contents.append(x.tobytes())
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


@pytest.mark.parametrize("names", [["nope"], ["probabilities", "probabilities"]], ids=["unknown", "duplicate"])
def test_bad_requested_outputs_rejected(grpc_stub, http_url, reference, names):
    req = _mlp_request(mlp_batch(1))
    for n in names:
        req.outputs.add(name=n)
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


def test_batch_over_max_rejected(grpc_stub, http_url, reference):
    req = _mlp_request(mlp_batch(9))
    _expect_code(grpc_stub, req, grpc.StatusCode.INVALID_ARGUMENT, http_url, reference)


def test_unknown_model_raw(grpc_stub, http_url, reference):
    req = _mlp_request(mlp_batch(1))
    req.model_name = "no_such_model"
    _expect_code(grpc_stub, req, grpc.StatusCode.NOT_FOUND, http_url, reference)
    req = _mlp_request(mlp_batch(1), version="9")
    _expect_code(grpc_stub, req, grpc.StatusCode.NOT_FOUND, http_url, reference)


def test_stream_infer(grpc_client, reference):
    """ModelStreamInfer (bidirectional stream) with several requests in flight."""
    import queue

    q = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: q.put((result, error)))
    try:
        xs = {}
        for i in range(6):
            x = mlp_batch(1 + i, seed=300 + i)
            xs[f"s{i}"] = x
            inp = grpcclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            grpc_client.async_stream_infer("mlp", [inp], model_version="1", request_id=f"s{i}")
        seen = set()
        for _ in range(6):
            result, error = q.get(timeout=10)
            assert error is None, error
            rid = result.get_response().id
            assert rid in xs and rid not in seen, rid
            seen.add(rid)
            assert_same(result.as_numpy("probabilities"),
                        reference.run("mlp", {"input": xs[rid]}, 1)["probabilities"], rid)
    finally:
        grpc_client.stop_stream()
