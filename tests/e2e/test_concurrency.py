"""Concurrent requests (the dynamic batcher must give every request its own rows back), large
messages, and request-framing variants real clients use."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import assert_same, json_infer_body, metric_sum, mlp_batch, parse_metrics


def test_concurrent_http_requests_get_their_own_rows(server, reference):
    """64 concurrent requests of 1..8 rows on both mlp versions: merged into batches or not, each
    answer must be the model applied to that request's rows."""
    def one(i):
        x = mlp_batch(1 + i % 8, seed=1000 + i)
        v = "1" if i % 3 else "2"
        r = requests.post(f"{server.http_url}/v2/models/mlp/versions/{v}/infer",
                          json=json_infer_body("input", x, id=f"c{i}"), timeout=30)
        return i, x, v, r

    before = parse_metrics(requests.get(server.http_url + "/metrics", timeout=10).text)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    for i, x, v, r in results:
        assert r.status_code == 200, (i, r.text)
        body = r.json()
        assert body["id"] == f"c{i}"
        out = body["outputs"][0]
        assert out["shape"] == [x.shape[0], 4], (i, out["shape"])
        got = np.asarray(out["data"], np.float32).reshape(out["shape"])
        assert_same(got, reference.run("mlp", {"input": x}, v)["probabilities"], f"request {i}")
    after = parse_metrics(requests.get(server.http_url + "/metrics", timeout=10).text)
    rows = sum(x.shape[0] for _, x, v, _ in results if v == "1")
    n1 = sum(1 for _, _, v, _ in results if v == "1")
    d = lambda n: (metric_sum(after, n, model="mlp", version="1") or 0) - (  # noqa: E731
        metric_sum(before, n, model="mlp", version="1") or 0)
    assert d("nv_inference_request_success") == n1
    assert d("nv_inference_count") == rows
    assert 1 <= d("nv_inference_exec_count") <= n1


def test_concurrent_grpc_requests_get_their_own_rows(server, reference):
    client = grpcclient.InferenceServerClient(url=server.grpc_addr)
    try:
        done = threading.Semaphore(0)
        results = {}

        def callback(i, x, result, error):
            results[i] = (x, result, error)
            done.release()

        n = 48
        for i in range(n):
            x = mlp_batch(1 + (i * 5) % 8, seed=2000 + i)
            inp = grpcclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            client.async_infer("mlp", [inp], model_version="1",
                               callback=lambda result, error, i=i, x=x: callback(i, x, result, error),
                               request_id=f"g{i}")
        for _ in range(n):
            assert done.acquire(timeout=15), "a gRPC request never completed"
        for i, (x, result, error) in sorted(results.items()):
            assert error is None, (i, error)
            assert result.get_response().id == f"g{i}"
            assert_same(result.as_numpy("probabilities"),
                        reference.run("mlp", {"input": x}, 1)["probabilities"], f"request {i}")
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_large_request(server, reference, protocol):
    """~6 MB of input (iris does not batch, so any row count is one request): above gRPC's
    customary 4 MiB default message limit, below Quiver's 64 MiB body limit."""
    x = np.random.default_rng(5).uniform(0.1, 8.0, (400_000, 4)).astype(np.float32)
    ref = reference.run("iris", {"input": x})
    if protocol == "http":
        c = httpclient.InferenceServerClient(url=server.http_addr, network_timeout=60)
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
    else:
        c = grpcclient.InferenceServerClient(url=server.grpc_addr)
        inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    try:
        inp.set_data_from_numpy(x)
        res = c.infer("iris", [inp]) if protocol == "http" else c.infer("iris", [inp], client_timeout=60)
        assert_same(res.as_numpy("label"), ref["label"], "label")
        assert_same(res.as_numpy("probabilities"), ref["probabilities"], "probabilities")
    finally:
        c.close()


def test_chunked_request_body(server, reference):
    x = mlp_batch(3, seed=8)
    body = json.dumps(json_infer_body("input", x)).encode()
    chunks = iter([body[:10], body[10:100], body[100:]])
    r = requests.post(f"{server.http_url}/v2/models/mlp/versions/1/infer", data=chunks,
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert_same(np.asarray(out["data"], np.float32).reshape(out["shape"]),
                reference.run("mlp", {"input": x}, 1)["probabilities"])


def test_keepalive_session_many_requests(server, reference):
    """One keep-alive connection, many sequential requests (JSON and binary interleaved)."""
    x = mlp_batch(2, seed=9)
    ref = reference.run("mlp", {"input": x}, 2)["probabilities"]
    head = json.dumps({"inputs": [{"name": "input", "shape": [2, 16], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    with requests.Session() as s:
        for i in range(40):
            if i % 2:
                r = s.post(f"{server.http_url}/v2/models/mlp/infer", data=head + x.tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(head))}, timeout=10)
            else:
                r = s.post(f"{server.http_url}/v2/models/mlp/infer", json=json_infer_body("input", x),
                           timeout=10)
            assert r.status_code == 200, (i, r.text)
            out = r.json()["outputs"][0]
            assert_same(np.asarray(out["data"], np.float32).reshape(2, 4), ref, f"request {i}")

