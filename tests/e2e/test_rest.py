"""Quiver's REST endpoints with plain `requests`: V2 metadata/config, JSON (flat and nested) and
hand-built binary-tensor requests, version routes, KServe V1."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import requests

from conftest import (assert_same, dumps_compact, error_message, json_infer_body, mlp_batch,
                      require_model)

TIMEOUT = 10


def get(url, **kw):
    return requests.get(url, timeout=TIMEOUT, **kw)


def post(url, **kw):
    return requests.post(url, timeout=TIMEOUT, **kw)


def outputs_by_name(resp_json) -> dict:
    out = {}
    for o in resp_json["outputs"]:
        dt = {"FP32": np.float32, "INT64": np.int64, "FP64": np.float64}[o["datatype"]]
        data = np.asarray(o["data"], dtype=dt)
        assert data.size == int(np.prod(o["shape"])), f"{o['name']}: {data.size} values for {o['shape']}"
        out[o["name"]] = data.reshape(o["shape"])
    return out


# ---------------------------------------------------------------- health, server and model metadata


def test_health(http_url):
    assert get(f"{http_url}/v2/health/live").status_code == 200
    assert get(f"{http_url}/v2/health/ready").status_code == 200


def test_server_metadata(http_url):
    r = get(f"{http_url}/v2")
    assert r.status_code == 200
    md = r.json()
    assert isinstance(md["name"], str) and md["name"]
    assert isinstance(md["version"], str) and md["version"]
    assert isinstance(md["extensions"], list)
    assert all(isinstance(e, str) for e in md["extensions"])


@pytest.mark.parametrize("model,inputs,outputs", [
    ("mlp", [("input", "FP32", [-1, 16])], [("probabilities", "FP32", [-1, 4])]),
    ("cnn", [("image", "FP32", [-1, 1, 8, 8])], [("probabilities", "FP32", [-1, 10])]),
    ("iris", [("input", "FP32", [-1, 4])],
     [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 3])]),
    ("gbm_regressor", [("input", "FP32", [-1, 5])], [("variable", "FP32", [-1, 1])]),
    ("int_ops", [("x", "INT64", [-1, 4])], [("y", "INT64", [-1, 4]), ("half", "FP32", [-1, 4])]),
])
def test_model_metadata(http_url, model, inputs, outputs):
    r = get(f"{http_url}/v2/models/{model}")
    assert r.status_code == 200, r.text
    md = r.json()
    assert md["name"] == model
    assert isinstance(md.get("platform"), str)
    assert "1" in md["versions"]
    assert sorted((t["name"], t["datatype"], t["shape"]) for t in md["inputs"]) == sorted(inputs)
    assert sorted((t["name"], t["datatype"], t["shape"]) for t in md["outputs"]) == sorted(outputs)


def test_version_routes(http_url, reference):
    for v in ("1", "2"):
        r = get(f"{http_url}/v2/models/mlp/versions/{v}")
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "mlp"
        assert get(f"{http_url}/v2/models/mlp/versions/{v}/ready").status_code == 200
    assert get(f"{http_url}/v2/models/mlp/ready").status_code == 200
    x = mlp_batch(2, seed=31)
    for v in ("1", "2"):
        r = post(f"{http_url}/v2/models/mlp/versions/{v}/infer", json=json_infer_body("input", x))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_name"] == "mlp"
        assert body["model_version"] == v
        assert_same(outputs_by_name(body)["probabilities"],
                    reference.run("mlp", {"input": x}, v)["probabilities"])


@pytest.mark.parametrize("path", [
    "/v2/models/no_such_model", "/v2/models/mlp/versions/77", "/v2/models/no_such_model/config",
])
def test_metadata_not_found(http_url, path):
    r = get(http_url + path)
    assert r.status_code == 404, (r.status_code, r.text)
    error_message(r)


@pytest.mark.parametrize("path", ["/v2/models/no_such_model/ready", "/v2/models/mlp/versions/77/ready"])
def test_ready_unknown_model(http_url, path):
    r = get(http_url + path)
    assert r.status_code in (400, 404), (r.status_code, r.text)


# ---------------------------------------------------------------- model config (Triton extension)


def test_config_mlp_from_pbtxt(http_url):
    r = get(f"{http_url}/v2/models/mlp/config")
    assert r.status_code == 200, r.text
    cfg = r.json()
    assert cfg["name"] == "mlp"
    assert cfg["platform"] == "onnxruntime_onnx"
    assert cfg["max_batch_size"] == 8
    assert cfg["input"] == [
        {**cfg["input"][0], "name": "input", "data_type": "TYPE_FP32", "dims": [16]}
    ]
    assert cfg["output"][0]["name"] == "probabilities"
    assert cfg["output"][0]["data_type"] == "TYPE_FP32"
    assert cfg["output"][0]["dims"] == [4]
    assert isinstance(cfg["dynamic_batching"], dict)
    assert cfg["instance_group"][0]["kind"] == "KIND_CPU"
    assert cfg["instance_group"][0]["count"] == 1
    assert "all" in cfg.get("version_policy", {}), cfg.get("version_policy")


def _io(cfg, key):
    return {t["name"]: (t["data_type"], [int(d) for d in t["dims"]]) for t in cfg[key]}


def test_config_cnn_autocompleted(http_url):
    r = get(f"{http_url}/v2/models/cnn/config")
    assert r.status_code == 200, r.text
    cfg = r.json()
    assert cfg["name"] == "cnn"
    assert cfg.get("platform") == "onnxruntime_onnx" or cfg.get("backend") == "onnxruntime", cfg
    assert isinstance(cfg["max_batch_size"], int) and cfg["max_batch_size"] > 0
    assert _io(cfg, "input") == {"image": ("TYPE_FP32", [1, 8, 8])}
    assert _io(cfg, "output") == {"probabilities": ("TYPE_FP32", [10])}


def test_config_gbm_and_int_ops_autocompleted(http_url):
    cfg = get(f"{http_url}/v2/models/gbm_regressor/config").json()
    assert cfg["max_batch_size"] > 0
    assert _io(cfg, "input") == {"input": ("TYPE_FP32", [5])}
    assert _io(cfg, "output") == {"variable": ("TYPE_FP32", [1])}
    cfg = get(f"{http_url}/v2/models/int_ops/config").json()
    assert cfg["max_batch_size"] > 0
    assert _io(cfg, "input") == {"x": ("TYPE_INT64", [4])}
    assert _io(cfg, "output") == {"y": ("TYPE_INT64", [4]), "half": ("TYPE_FP32", [4])}


def test_config_iris_non_batching(http_url):
    cfg = get(f"{http_url}/v2/models/iris/config").json()
    assert cfg["max_batch_size"] == 0
    assert _io(cfg, "input") == {"input": ("TYPE_FP32", [-1, 4])}
    assert _io(cfg, "output") == {"label": ("TYPE_INT64", [-1]), "probabilities": ("TYPE_FP32", [-1, 3])}


# ---------------------------------------------------------------- JSON inference


def test_json_flat_and_nested(http_url, reference):
    x = mlp_batch(3, seed=5)
    expected = reference.run("mlp", {"input": x}, 2)["probabilities"]
    flat = json_infer_body("input", x)
    nested = {"inputs": [{"name": "input", "shape": [3, 16], "datatype": "FP32", "data": x.tolist()}]}
    for body in (flat, nested):
        r = post(f"{http_url}/v2/models/mlp/infer", json=body)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"]
        assert len(out) == 1 and out[0]["name"] == "probabilities"
        assert out[0]["datatype"] == "FP32" and out[0]["shape"] == [3, 4]
        assert_same(outputs_by_name(r.json())["probabilities"], expected)


def test_json_nested_4d(http_url, reference):
    x = np.random.default_rng(9).standard_normal((2, 1, 8, 8)).astype(np.float32)
    body = {"inputs": [{"name": "image", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": x.tolist()}]}
    r = post(f"{http_url}/v2/models/cnn/infer", json=body)
    assert r.status_code == 200, r.text
    assert_same(outputs_by_name(r.json())["probabilities"],
                reference.run("cnn", {"image": x})["probabilities"])


def test_json_integer_literals_for_fp32(http_url, reference):
    # JSON has one number type: 1 and 1.0 are the same FP32 value.
    x = np.arange(16, dtype=np.float32).reshape(1, 16) - 8
    body = {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32",
                        "data": [int(v) for v in x.flatten()]}]}
    r = post(f"{http_url}/v2/models/mlp/infer", json=body)
    assert r.status_code == 200, r.text
    assert_same(outputs_by_name(r.json())["probabilities"],
                reference.run("mlp", {"input": x}, 2)["probabilities"])


def test_json_id_parameters_and_requested_outputs(http_url, reference):
    x = np.array([[5.9, 3.0, 5.1, 1.8], [4.9, 3.1, 1.5, 0.1]], np.float32)
    body = json_infer_body("input", x, id="my-request-1",
                           parameters={"some_client_param": "ignored", "n": 3},
                           outputs=[{"name": "label"}])
    body["inputs"][0]["parameters"] = {"content_type": "np"}
    r = post(f"{http_url}/v2/models/iris/infer", json=body)
    assert r.status_code == 200, r.text
    resp = r.json()
    assert resp["id"] == "my-request-1"
    assert resp["model_name"] == "iris"
    assert [o["name"] for o in resp["outputs"]] == ["label"]
    got = outputs_by_name(resp)
    assert resp["outputs"][0]["datatype"] == "INT64"
    assert_same(got["label"], reference.run("iris", {"input": x})["label"], "label")


def test_json_int64_exact(http_url, reference):
    # Values beyond 2^53 must survive JSON both ways without going through a double.
    x = np.array([[2**62 // 3, -(2**61), 9007199254740993, 1]], dtype=np.int64)
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [int(v) for v in x[0]]}]}
    r = post(f"{http_url}/v2/models/int_ops/infer", data=dumps_compact(body),
             headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    ys = [o for o in json.loads(r.text)["outputs"] if o["name"] == "y"][0]
    assert ys["datatype"] == "INT64"
    ref = reference.run("int_ops", {"x": x})["y"]
    assert [int(v) for v in np.asarray(ys["data"], dtype=object).flatten()] == [int(v) for v in ref.flatten()]


# ---------------------------------------------------------------- binary tensor extension, by hand


def binary_request(json_part: dict, blobs: list[bytes]) -> tuple[bytes, dict]:
    header = dumps_compact(json_part)
    body = header + b"".join(blobs)
    return body, {"Inference-Header-Content-Length": str(len(header)),
                  "Content-Type": "application/octet-stream"}


def parse_binary_response(r: requests.Response) -> tuple[dict, dict]:
    """Returns (json header, {output name: raw bytes}) of a binary-extension response."""
    n = r.headers.get("Inference-Header-Content-Length")
    if n is None:
        return r.json(), {}
    n = int(n)
    head = json.loads(r.content[:n])
    raw, pos = {}, n
    for o in head["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        if size is not None:
            raw[o["name"]] = r.content[pos:pos + size]
            pos += size
    assert pos == len(r.content), f"{len(r.content) - pos} trailing bytes after the binary outputs"
    return head, raw


def test_binary_in_binary_out(http_url, reference):
    x = mlp_batch(4, seed=77)
    head = {"inputs": [{"name": "input", "shape": [4, 16], "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}
    body, headers = binary_request(head, [x.tobytes()])
    r = post(f"{http_url}/v2/models/mlp/versions/1/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text[:500]
    assert "Inference-Header-Content-Length" in r.headers
    resp, raw = parse_binary_response(r)
    o = resp["outputs"][0]
    assert o["name"] == "probabilities" and o["shape"] == [4, 4] and o["datatype"] == "FP32"
    assert o["parameters"]["binary_data_size"] == 64
    got = np.frombuffer(raw["probabilities"], np.float32).reshape(4, 4)
    assert_same(got, reference.run("mlp", {"input": x}, 1)["probabilities"])


def test_binary_in_json_out(http_url, reference):
    x = mlp_batch(2, seed=78)
    head = {"inputs": [{"name": "input", "shape": [2, 16], "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes}}]}
    body, headers = binary_request(head, [x.tobytes()])
    r = post(f"{http_url}/v2/models/mlp/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text[:500]
    resp, raw = parse_binary_response(r)
    assert raw == {}
    assert_same(outputs_by_name(resp)["probabilities"],
                reference.run("mlp", {"input": x}, 2)["probabilities"])


def test_json_in_binary_output_for_whole_request(http_url, reference):
    x = np.array([[1, 2, 3, 4], [5, 6, 7, -8]], dtype=np.int64)
    body = json_infer_body("x", x, datatype="INT64", parameters={"binary_data_output": True})
    r = post(f"{http_url}/v2/models/int_ops/infer", json=body)
    assert r.status_code == 200, r.text[:500]
    resp, raw = parse_binary_response(r)
    assert set(raw) == {"y", "half"}, resp
    ref = reference.run("int_ops", {"x": x})
    assert_same(np.frombuffer(raw["y"], np.int64).reshape(2, 4), ref["y"], "y")
    assert_same(np.frombuffer(raw["half"], np.float32).reshape(2, 4), ref["half"], "half")


def test_mixed_binary_and_json_outputs(http_url, reference):
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.1, 5.6, 2.4], [5.7, 2.8, 4.1, 1.3]], np.float32)
    head = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "label", "parameters": {"binary_data": False}},
                        {"name": "probabilities", "parameters": {"binary_data": True}}]}
    body, headers = binary_request(head, [x.tobytes()])
    r = post(f"{http_url}/v2/models/iris/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text[:500]
    resp, raw = parse_binary_response(r)
    ref = reference.run("iris", {"input": x})
    assert set(raw) == {"probabilities"}
    label = [o for o in resp["outputs"] if o["name"] == "label"][0]
    assert_same(np.asarray(label["data"], np.int64).reshape(label["shape"]), ref["label"], "label")
    assert_same(np.frombuffer(raw["probabilities"], np.float32).reshape(3, 3), ref["probabilities"])


def test_binary_bytes_tensor(http_url):
    require_model("string_identity")
    words = [b"quiver", b"", "h\u00e9llo".encode(), b"x" * 1000]
    blob = b"".join(struct.pack("<I", len(w)) + w for w in words)
    head = {"inputs": [{"name": "text", "shape": [4], "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(blob)}}],
            "outputs": [{"name": "text_out", "parameters": {"binary_data": True}}]}
    body, headers = binary_request(head, [blob])
    r = post(f"{http_url}/v2/models/string_identity/infer", data=body, headers=headers)
    assert r.status_code == 200, r.text[:500]
    resp, raw = parse_binary_response(r)
    assert resp["outputs"][0]["datatype"] == "BYTES" and resp["outputs"][0]["shape"] == [4]
    assert raw["text_out"] == blob


def test_json_bytes_tensor(http_url):
    require_model("string_identity")
    words = ["quiver", "", "h\u00e9llo w\u00f6rld", "\u2603 snow"]
    body = {"inputs": [{"name": "text", "shape": [4], "datatype": "BYTES", "data": words}]}
    r = post(f"{http_url}/v2/models/string_identity/infer", json=body)
    assert r.status_code == 200, r.text[:500]
    out = r.json()["outputs"][0]
    assert out["datatype"] == "BYTES" and out["shape"] == [4]
    assert out["data"] == words


# ---------------------------------------------------------------- KServe V1


def test_v1_model_status(http_url):
    r = get(f"{http_url}/v1/models/mlp")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "mlp" and body["ready"] is True


def test_v1_predict_mlp(http_url, reference):
    x = mlp_batch(3, seed=55)
    r = post(f"{http_url}/v1/models/mlp:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    preds = np.asarray(r.json()["predictions"], dtype=np.float32)
    assert_same(preds, reference.run("mlp", {"input": x}, 2)["probabilities"])


def test_v1_predict_inputs_form(http_url, reference):
    x = mlp_batch(2, seed=56)
    r = post(f"{http_url}/v1/models/mlp:predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    preds = np.asarray(r.json()["predictions"], dtype=np.float32)
    assert_same(preds, reference.run("mlp", {"input": x}, 2)["probabilities"])


def test_v1_predict_cnn_and_regressor(http_url, reference):
    x = np.random.default_rng(57).standard_normal((2, 1, 8, 8)).astype(np.float32)
    r = post(f"{http_url}/v1/models/cnn:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    assert_same(np.asarray(r.json()["predictions"], np.float32),
                reference.run("cnn", {"image": x})["probabilities"])
    x = np.random.default_rng(58).standard_normal((3, 5)).astype(np.float32)
    r = post(f"{http_url}/v1/models/gbm_regressor:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    assert_same(np.asarray(r.json()["predictions"], np.float32),
                reference.run("gbm_regressor", {"input": x})["variable"])


def test_v1_errors(http_url):
    r = get(f"{http_url}/v1/models/no_such_model")
    assert r.status_code == 404
    error_message(r)
    r = post(f"{http_url}/v1/models/no_such_model:predict", json={"instances": [[0.0] * 16]})
    assert r.status_code == 404
    error_message(r)
    r = post(f"{http_url}/v1/models/mlp:predict", json={"instances": [[0.0] * 15]})
    assert r.status_code == 400, r.text
    error_message(r)
    r = post(f"{http_url}/v1/models/mlp:predict", json={"instances": [[0.0] * 16, [0.0] * 15]})
    assert r.status_code == 400, r.text
    error_message(r)
    r = post(f"{http_url}/v1/models/mlp:predict", json={"no_instances": []})
    assert r.status_code == 400, r.text
    error_message(r)
    r = post(f"{http_url}/v1/models/mlp:predict", data=b"{not json")
    assert r.status_code == 400, r.text
    error_message(r)


@pytest.mark.parametrize("pad", range(8))
def test_binary_tensors_at_unaligned_offsets(http_url, reference, pad):
    """The binary part starts right after the JSON header, at any byte offset: FP32 and INT64
    tensors must be read correctly whatever their alignment."""
    xi = np.array([[1, -2, 3, 2**40], [5, 6, -7, 8]], dtype=np.int64)
    head = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "INT64",
                        "parameters": {"binary_data_size": xi.nbytes}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}},
                        {"name": "half", "parameters": {"binary_data": True}}]}
    h = dumps_compact(head)
    h = h + b" " * ((pad - len(h)) % 8)  # JSON allows trailing whitespace
    assert len(h) % 8 == pad
    r = post(f"{http_url}/v2/models/int_ops/infer", data=h + xi.tobytes(),
             headers={"Inference-Header-Content-Length": str(len(h))})
    assert r.status_code == 200, r.text[:300]
    resp, raw = parse_binary_response(r)
    ref = reference.run("int_ops", {"x": xi})
    assert_same(np.frombuffer(raw["y"], np.int64).reshape(2, 4), ref["y"], "y")
    assert_same(np.frombuffer(raw["half"], np.float32).reshape(2, 4), ref["half"], "half")

    x = mlp_batch(3, seed=pad)
    # two FP32 tensors back to back would need two inputs; shift the second model's input instead
    head = {"inputs": [{"name": "input", "shape": [3, 16], "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes}}]}
    h = dumps_compact(head)
    h = h + b"\n" * ((pad - len(h)) % 8)
    r = post(f"{http_url}/v2/models/mlp/versions/1/infer", data=h + x.tobytes(),
             headers={"Inference-Header-Content-Length": str(len(h))})
    assert r.status_code == 200, r.text[:300]
    assert_same(outputs_by_name(r.json())["probabilities"],
                reference.run("mlp", {"input": x}, 1)["probabilities"])


def test_header_length_equal_to_whole_json_body(http_url, reference):
    """Inference-Header-Content-Length covering the whole body (no binary part) is plain JSON."""
    x = mlp_batch(2, seed=3)
    body = dumps_compact(json_infer_body("input", x))
    r = post(f"{http_url}/v2/models/mlp/infer", data=body,
             headers={"Inference-Header-Content-Length": str(len(body)),
                      "Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    assert_same(outputs_by_name(r.json())["probabilities"],
                reference.run("mlp", {"input": x}, 2)["probabilities"])


def test_per_output_binary_flag_overrides_request_flag(http_url, reference):
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.1, 5.6, 2.4]], np.float32)
    body = json_infer_body("input", x, parameters={"binary_data_output": True},
                           outputs=[{"name": "label", "parameters": {"binary_data": False}},
                                    {"name": "probabilities"}])
    r = post(f"{http_url}/v2/models/iris/infer", json=body)
    assert r.status_code == 200, r.text[:300]
    resp, raw = parse_binary_response(r)
    ref = reference.run("iris", {"input": x})
    assert set(raw) == {"probabilities"}, resp
    label = [o for o in resp["outputs"] if o["name"] == "label"][0]
    assert_same(np.asarray(label["data"], np.int64).reshape(label["shape"]), ref["label"], "label")
    assert_same(np.frombuffer(raw["probabilities"], np.float32).reshape(2, 3), ref["probabilities"])


def _check_triton_io(io, batching: bool, where: str):
    """Triton's ValidateIOShape: non-empty dims, each >= 1 or -1."""
    dims = [int(d) for d in io.get("dims", [])]
    assert dims, f"{where}: '{io['name']}' has empty dims (Triton rejects such a config; it writes " \
                 "dims [1] with reshape {shape: []} for a batched rank-1 tensor)"
    assert all(d >= 1 or d == -1 for d in dims), f"{where}: '{io['name']}' dims {dims}"


def test_every_config_is_a_valid_triton_config(http_url):
    models = post(f"{http_url}/v2/repository/index", json={}).json()
    names = sorted({m["name"] for m in models})
    assert {"mlp", "cnn", "iris", "gbm_regressor", "int_ops"} <= set(names)
    problems = []
    for name in names:
        cfg = get(f"{http_url}/v2/models/{name}/config").json()
        for key in ("input", "output"):
            for io in cfg[key]:
                try:
                    _check_triton_io(io, cfg["max_batch_size"] > 0, f"{name}.{key}")
                except AssertionError as e:
                    problems.append(str(e))
    assert not problems, "\n".join(problems)


def test_head_answers_like_get_without_a_body(http_url):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/mlp", "/v2/models/mlp/ready"):
        r = requests.head(http_url + path, timeout=5)
        assert r.status_code == 200, (path, r.status_code)
        assert r.content == b"", path
    assert requests.head(http_url + "/v2/models/nope", timeout=5).status_code == 404
