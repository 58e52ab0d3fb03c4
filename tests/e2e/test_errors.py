"""Abusive and malformed REST requests: each must get the stated 4xx status with a JSON
{"error": "..."} body, answer quickly, and leave the server serving (a good inference follows
each one)."""

from __future__ import annotations

import socket
import struct
import time

import pytest
import requests

from conftest import (QuiverServer, check_good_inference, copy_deploy_models, dumps_compact,
                      error_message, json_infer_body, mlp_batch, require_model)

TIMEOUT = 10
MLP = "/v2/models/mlp/infer"


def post_raw(url, body: bytes, headers: dict | None = None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    t0 = time.monotonic()
    r = requests.post(url, data=body, headers=h, timeout=TIMEOUT)
    r.elapsed_s = time.monotonic() - t0
    return r


def expect_error(r, status, http_url, reference, max_seconds: float = 3.0) -> str:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    msg = error_message(r)
    assert r.elapsed_s < max_seconds, f"took {r.elapsed_s:.2f}s to reject"
    check_good_inference(http_url, reference)
    return msg


def good_mlp_body(rows=1, **extra):
    return json_infer_body("input", mlp_batch(rows), **extra)


# ---------------------------------------------------------------- JSON-level errors


@pytest.mark.parametrize("body", [
    b"{\"inputs\": [", b"", b"null", b"[]", b"\"inputs\"", b"{\"inputs\": 5}",
    b"\xff\xfe{}", b"{\"inputs\": [{\"name\": \"input\"}]}",
    b"{\"inputs\": [{\"name\": \"input\", \"shape\": [1,16], \"datatype\": \"FP32\"}]}",
], ids=["truncated", "empty", "null", "array", "string", "inputs-not-list", "not-utf8",
        "input-missing-fields", "no-data"])
def test_malformed_json(http_url, reference, body):
    expect_error(post_raw(http_url + MLP, body), 400, http_url, reference)


def test_unknown_model(http_url, reference):
    r = post_raw(http_url + "/v2/models/no_such_model/infer", dumps_compact(good_mlp_body()))
    expect_error(r, 404, http_url, reference)


@pytest.mark.parametrize("version", ["77", "0"])
def test_unknown_version(http_url, reference, version):
    r = post_raw(f"{http_url}/v2/models/mlp/versions/{version}/infer", dumps_compact(good_mlp_body()))
    expect_error(r, 404, http_url, reference)


def test_wrong_input_name(http_url, reference):
    body = json_infer_body("not_the_input", mlp_batch(1))
    expect_error(post_raw(http_url + MLP, dumps_compact(body)), 400, http_url, reference)


def test_missing_input(http_url, reference):
    expect_error(post_raw(http_url + MLP, b'{"inputs": []}'), 400, http_url, reference)


def test_duplicate_input(http_url, reference):
    body = good_mlp_body()
    body["inputs"].append(dict(body["inputs"][0]))
    expect_error(post_raw(http_url + MLP, dumps_compact(body)), 400, http_url, reference)


@pytest.mark.parametrize("datatype", ["INT32", "FP64", "BYTES", "FLOAT99", ""])
def test_wrong_datatype(http_url, reference, datatype):
    body = {"inputs": [{"name": "input", "shape": [1, 16], "datatype": datatype, "data": [1] * 16}]}
    expect_error(post_raw(http_url + MLP, dumps_compact(body)), 400, http_url, reference)


@pytest.mark.parametrize("data", [
    ["a"] * 16, [None] * 16, [[1.0] * 8, [1.0] * 9], [True] * 16, [{"x": 1}] * 16,
], ids=["strings", "nulls", "ragged", "bools", "objects"])
def test_wrong_json_values(http_url, reference, data):
    body = {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": data}]}
    expect_error(post_raw(http_url + MLP, dumps_compact(body)), 400, http_url, reference)


def test_int64_out_of_range(http_url, reference):
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64",
                        "data": [1, 2, 3, 2**64]}]}
    r = post_raw(http_url + "/v2/models/int_ops/infer", dumps_compact(body))
    expect_error(r, 400, http_url, reference)


@pytest.mark.parametrize("shape,count", [([2, 16], 16), ([1, 16], 17), ([1, 16], 15), ([16], 16),
                                         ([1, 1, 16], 16), ([1, 15], 15)])
def test_shape_mismatch(http_url, reference, shape, count):
    body = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": [0.5] * count}]}
    expect_error(post_raw(http_url + MLP, dumps_compact(body)), 400, http_url, reference)


@pytest.mark.parametrize("shape", [[-1, 16], [1, -16], [-2, -8], [1, 16, -1]])
def test_negative_dims(http_url, reference, shape):
    body = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": [0.5] * 16}]}
    expect_error(post_raw(http_url + MLP, dumps_compact(body)), 400, http_url, reference)


def test_non_integer_shape(http_url, reference):
    for shape in ([1.5, 16], ["1", "16"], 16, None):
        body = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": [0.5] * 16}]}
        expect_error(post_raw(http_url + MLP, dumps_compact(body)), 400, http_url, reference)


def test_batch_over_max_batch_size(http_url, reference):
    r = post_raw(http_url + MLP, dumps_compact(good_mlp_body(rows=9)))
    expect_error(r, 400, http_url, reference)


def test_unknown_requested_output(http_url, reference):
    body = good_mlp_body(outputs=[{"name": "no_such_output"}])
    expect_error(post_raw(http_url + MLP, dumps_compact(body)), 400, http_url, reference)


def test_duplicate_requested_output(http_url, reference):
    body = good_mlp_body(outputs=[{"name": "probabilities"}, {"name": "probabilities"}])
    expect_error(post_raw(http_url + MLP, dumps_compact(body)), 400, http_url, reference)


HUGE_SHAPES = [[1099511627776], [1048576, 1048576], [1099511627776, 16],
               [4294967296, 4294967296, 16], [2**62, 2**62], [9223372036854775807, 16]]


@pytest.mark.parametrize("shape", HUGE_SHAPES, ids=[str(s) for s in HUGE_SHAPES])
def test_huge_shape_json(http_url, reference, shape):
    body = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": [0.5] * 16}]}
    expect_error(post_raw(http_url + MLP, dumps_compact(body)), 400, http_url, reference, 2.0)


@pytest.mark.parametrize("shape", HUGE_SHAPES, ids=[str(s) for s in HUGE_SHAPES])
def test_huge_shape_binary(http_url, reference, shape):
    head = dumps_compact({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                                      "parameters": {"binary_data_size": 64}}]})
    r = post_raw(http_url + MLP, head + b"\0" * 64,
                 {"Inference-Header-Content-Length": str(len(head))})
    expect_error(r, 400, http_url, reference, 2.0)


def test_huge_shape_bytes_tensor(http_url, reference):
    require_model("string_identity")
    # BYTES element counts are not implied by the byte size: the server must still not allocate
    # 2^40 slots.
    blob = struct.pack("<I", 3) + b"abc"
    head = dumps_compact({"inputs": [{"name": "text", "shape": [1099511627776], "datatype": "BYTES",
                                      "parameters": {"binary_data_size": len(blob)}}]})
    r = post_raw(http_url + "/v2/models/string_identity/infer", head + blob,
                 {"Inference-Header-Content-Length": str(len(head))})
    expect_error(r, 400, http_url, reference, 2.0)


def test_deeply_nested_json(http_url, reference):
    # 100k levels of nesting must be refused, not overflow the stack.
    depth = 100_000
    body = b'{"inputs":[{"name":"input","shape":[1,16],"datatype":"FP32","data":' + \
        b"[" * depth + b"1" + b"]" * depth + b"}]}"
    expect_error(post_raw(http_url + MLP, body), 400, http_url, reference)


def test_big_array_data_for_small_shape(http_url, reference):
    # 1M values where the shape promises 16.
    body = b'{"inputs":[{"name":"input","shape":[1,16],"datatype":"FP32","data":[' + \
        b",".join([b"0.5"] * 1_000_000) + b"]}]}"
    r = post_raw(http_url + MLP, body)
    # 4 MB: a server whose default body limit is below that may answer 413 instead.
    expect_error(r, 413 if r.status_code == 413 else 400, http_url, reference, 5.0)


# ---------------------------------------------------------------- binary tensor extension errors


def _binary(head: dict, blob: bytes, header_len: int | None = None) -> tuple[bytes, dict]:
    h = dumps_compact(head)
    return h + blob, {"Inference-Header-Content-Length": str(len(h) if header_len is None else header_len)}


def _mlp_binary_head(rows: int, size: int) -> dict:
    return {"inputs": [{"name": "input", "shape": [rows, 16], "datatype": "FP32",
                        "parameters": {"binary_data_size": size}}]}


def test_binary_header_length_past_body(http_url, reference):
    x = mlp_batch(1)
    body, headers = _binary(_mlp_binary_head(1, 64), x.tobytes())
    headers["Inference-Header-Content-Length"] = str(len(body) + 100)
    expect_error(post_raw(http_url + MLP, body, headers), 400, http_url, reference)


@pytest.mark.parametrize("value", ["-5", "abc", "18446744073709551617", "1e3", ""])
def test_binary_header_length_garbage(http_url, reference, value):
    x = mlp_batch(1)
    body, headers = _binary(_mlp_binary_head(1, 64), x.tobytes())
    headers["Inference-Header-Content-Length"] = value
    expect_error(post_raw(http_url + MLP, body, headers), 400, http_url, reference)


def test_binary_header_length_cuts_json(http_url, reference):
    x = mlp_batch(1)
    body, headers = _binary(_mlp_binary_head(1, 64), x.tobytes())
    headers["Inference-Header-Content-Length"] = str(int(headers["Inference-Header-Content-Length"]) - 5)
    expect_error(post_raw(http_url + MLP, body, headers), 400, http_url, reference)


def test_binary_data_size_past_end(http_url, reference):
    x = mlp_batch(1)
    body, headers = _binary(_mlp_binary_head(1, 64), x.tobytes()[:40])
    expect_error(post_raw(http_url + MLP, body, headers), 400, http_url, reference)


@pytest.mark.parametrize("size", [2**62, 2**64 - 1, -64])
def test_binary_data_size_absurd(http_url, reference, size):
    x = mlp_batch(1)
    body, headers = _binary(_mlp_binary_head(1, size), x.tobytes())
    expect_error(post_raw(http_url + MLP, body, headers), 400, http_url, reference)


@pytest.mark.parametrize("size,extra", [(60, b""), (64, b"\0" * 8), (68, b"\0" * 4)],
                         ids=["size-short-of-shape", "trailing-bytes", "size-over-shape"])
def test_binary_data_size_mismatch(http_url, reference, size, extra):
    x = mlp_batch(1)
    body, headers = _binary(_mlp_binary_head(1, size), x.tobytes() + extra)
    expect_error(post_raw(http_url + MLP, body, headers), 400, http_url, reference)


def test_binary_and_json_data_together(http_url, reference):
    x = mlp_batch(1)
    head = _mlp_binary_head(1, 64)
    head["inputs"][0]["data"] = x.flatten().tolist()
    body, headers = _binary(head, x.tobytes())
    expect_error(post_raw(http_url + MLP, body, headers), 400, http_url, reference)


@pytest.mark.parametrize("blob", [
    struct.pack("<I", 100) + b"abc",                      # prefix past the end
    struct.pack("<I", 0xFFFFFFFF) + b"abc",               # 4 GiB prefix
    struct.pack("<I", 3) + b"abc" + b"\x01\x00",          # truncated second prefix
    struct.pack("<I", 3) + b"abc" + struct.pack("<I", 3) + b"de",  # second element short
], ids=["past-end", "4GiB", "truncated-prefix", "short-element"])
def test_bytes_length_prefix_past_end(http_url, reference, blob):
    require_model("string_identity")
    # shape [2]: two elements are promised, none of the blobs holds two valid ones.
    head = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(blob)}}]}
    body, headers = _binary(head, blob)
    r = post_raw(http_url + "/v2/models/string_identity/infer", body, headers)
    expect_error(r, 400, http_url, reference)


def test_bytes_element_count_mismatch(http_url, reference):
    require_model("string_identity")
    blob = b"".join(struct.pack("<I", 1) + c for c in (b"a", b"b", b"c"))
    head = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(blob)}}]}
    body, headers = _binary(head, blob)
    r = post_raw(http_url + "/v2/models/string_identity/infer", body, headers)
    expect_error(r, 400, http_url, reference)


# ---------------------------------------------------------------- inference errors


def test_inference_error_is_500_and_counted(http_url, grpc_stub, reference):
    """A request that is valid but fails while the model runs (Gather index out of range): HTTP 500
    / gRPC INTERNAL with a message, counted as a failure, and the model keeps serving."""
    from conftest import metric_sum, parse_metrics
    from tritonclient.grpc import service_pb2
    import grpc

    require_model("lookup")
    url = f"{http_url}/v2/models/lookup/infer"

    def body(idx):
        return dumps_compact({"inputs": [{"name": "idx", "shape": [1, 2], "datatype": "INT64", "data": idx}]})

    def failures():
        s = parse_metrics(requests.get(http_url + "/metrics", timeout=5).text)
        return metric_sum(s, "nv_inference_request_failure", model="lookup", version="1") or 0

    r = post_raw(url, body([2, -1]))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [3.0, 13.5]
    before = failures()
    for idx in ([1, 99], [-11, 0], [0, 2**62]):
        r = post_raw(url, body(idx))
        assert r.status_code == 500, (idx, r.status_code, r.text[:300])
        error_message(r)
        r = post_raw(url, body([0, 9]))
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [0.0, 13.5], r.text
    req = service_pb2.ModelInferRequest(model_name="lookup")
    req.inputs.add(name="idx", datatype="INT64", shape=[1, 2]).contents.int64_contents.extend([5, 10])
    with pytest.raises(grpc.RpcError) as e:
        grpc_stub.ModelInfer(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.INTERNAL, (e.value.code(), e.value.details())
    assert e.value.details()
    deadline = time.monotonic() + 3
    while failures() < before + 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert failures() - before == 4
    check_good_inference(http_url, reference)


# ---------------------------------------------------------------- HTTP-level abuse


def test_wrong_method_and_path(http_url, reference):
    r = requests.get(http_url + MLP, timeout=TIMEOUT)
    assert 400 <= r.status_code < 500 and r.status_code != 200
    r = requests.get(http_url + "/v2/no/such/route", timeout=TIMEOUT)
    assert r.status_code == 404
    check_good_inference(http_url, reference)


def test_content_length_lies(http_url, reference):
    """A client announcing more body than it sends, then closing: the server must drop it and go on."""
    host, port = http_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST " + MLP.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{\"inputs\": [")
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        try:
            s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            pass
    check_good_inference(http_url, reference)


# ---------------------------------------------------------------- body size limit


def test_body_over_size_limit(tmp_path, reference):
    repo = copy_deploy_models(tmp_path / "models", only=["mlp"])
    srv = QuiverServer(repo, tmp_path / "quiver.log", ["--http-max-body-bytes", "4096"])
    srv.spawn()
    try:
        try:
            srv.wait_listening(30)
        except RuntimeError:
            log = srv.log()
            if srv.proc.poll() is not None and ("http-max-body-bytes" in log or "unexpected argument" in log):
                pytest.skip("this quiver build has no --http-max-body-bytes flag")
            raise
        srv.wait_ready(30)
        url = srv.http_url
        # 2 rows of JSON are well under the limit.
        small = dumps_compact(good_mlp_body(rows=2))
        assert len(small) < 4096
        r = requests.post(url + MLP, data=small, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        # Over the limit, with an honest Content-Length...
        big = dumps_compact(good_mlp_body(rows=2, parameters={"pad": "x" * 10_000}))
        r = requests.post(url + MLP, data=big, timeout=TIMEOUT)
        assert r.status_code in (400, 413), (r.status_code, r.text[:200])
        error_message(r)
        # ... and chunked (no Content-Length): the limit still holds (a reset also refuses it).
        try:
            r = requests.post(url + MLP, data=iter([big[:5000], big[5000:]]), timeout=TIMEOUT)
            assert r.status_code in (400, 413), (r.status_code, r.text[:200])
        except requests.ConnectionError:
            pass
        r = requests.post(url + MLP, data=small, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        rc = srv.terminate()
        assert rc == 0, f"exit code {rc}:\n{srv.log_tail()}"
    finally:
        srv.kill()
