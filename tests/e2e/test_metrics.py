"""/metrics: Triton's metric names and labels, counting what the tests send."""

from __future__ import annotations

import time

import numpy as np
import requests
import tritonclient.grpc as grpcclient

from conftest import json_infer_body, metric_sum, mlp_batch, parse_metrics

V1 = {"model": "mlp", "version": "1"}
V2 = {"model": "mlp", "version": "2"}


def scrape(http_url):
    r = requests.get(http_url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text[:300]
    assert "text/plain" in r.headers.get("Content-Type", ""), r.headers.get("Content-Type")
    return parse_metrics(r.text)


def value(samples, name, labels) -> float:
    v = metric_sum(samples, name, **labels)
    return 0.0 if v is None else v


def wait_for(http_url, name, labels, at_least, timeout=3.0):
    """Metrics may be recorded just after the response: poll briefly."""
    deadline = time.monotonic() + timeout
    while True:
        s = scrape(http_url)
        if value(s, name, labels) >= at_least or time.monotonic() > deadline:
            return s
        time.sleep(0.05)


def test_success_counts(http_url, grpc_client):
    before = scrape(http_url)
    k, rows = 5, 3
    for i in range(k):
        body = json_infer_body("input", mlp_batch(rows, seed=i))
        r = requests.post(f"{http_url}/v2/models/mlp/versions/1/infer", json=body, timeout=10)
        assert r.status_code == 200, r.text
    # one more through gRPC, 2 rows
    inp = grpcclient.InferInput("input", [2, 16], "FP32")
    inp.set_data_from_numpy(mlp_batch(2))
    grpc_client.infer("mlp", [inp], model_version="1")
    k += 1
    items = 5 * rows + 2

    after = wait_for(http_url, "nv_inference_request_success", V1,
                     value(before, "nv_inference_request_success", V1) + k)
    d = {n: value(after, n, V1) - value(before, n, V1) for n in (
        "nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count",
        "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us")}
    # the series exist with exactly these labels
    for n in ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count",
              "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
              "nv_inference_compute_infer_duration_us"):
        assert metric_sum(after, n, **V1) is not None, f'{n}{{model="mlp",version="1"}} missing'
    assert d["nv_inference_request_success"] == k, d
    assert d["nv_inference_count"] == items, d
    assert 1 <= d["nv_inference_exec_count"] <= k, d
    assert d["nv_inference_request_duration_us"] > 0, d
    assert d["nv_inference_compute_infer_duration_us"] > 0, d
    assert d["nv_inference_queue_duration_us"] >= 0, d
    assert d["nv_inference_request_duration_us"] >= d["nv_inference_compute_infer_duration_us"], d


def test_latest_version_label(http_url):
    before = scrape(http_url)
    r = requests.post(f"{http_url}/v2/models/mlp/infer", json=json_infer_body("input", mlp_batch(1)),
                      timeout=10)
    assert r.status_code == 200, r.text
    b2 = value(before, "nv_inference_request_success", V2)
    after = wait_for(http_url, "nv_inference_request_success", V2, b2 + 1)
    assert value(after, "nv_inference_request_success", V2) == b2 + 1
    assert value(after, "nv_inference_request_success", V1) == value(
        before, "nv_inference_request_success", V1)


def test_failure_counts(http_url):
    before = scrape(http_url)
    # Well-formed requests the model must refuse: 9 rows > max_batch_size 8; 15 features.
    bad = [json_infer_body("input", mlp_batch(9)),
           {"inputs": [{"name": "input", "shape": [1, 15], "datatype": "FP32", "data": [0.0] * 15}]}]
    for body in bad:
        r = requests.post(f"{http_url}/v2/models/mlp/versions/1/infer", json=body, timeout=10)
        assert r.status_code == 400, r.text
    after = wait_for(http_url, "nv_inference_request_failure", V1,
                     value(before, "nv_inference_request_failure", V1) + len(bad))
    fail = [(n, l) for n, l, _ in after if n == "nv_inference_request_failure"]
    assert fail, "no nv_inference_request_failure series at all"
    assert value(after, "nv_inference_request_failure", V1) - value(
        before, "nv_inference_request_failure", V1) == len(bad)
    assert value(after, "nv_inference_request_success", V1) == value(
        before, "nv_inference_request_success", V1)
    # Refused requests never ran.
    assert value(after, "nv_inference_exec_count", V1) == value(before, "nv_inference_exec_count", V1)


def test_metric_types(http_url):
    text = requests.get(http_url + "/metrics", timeout=10).text
    for n in ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
              "nv_inference_exec_count"):
        assert f"# TYPE {n} counter" in text, n
    assert np.isfinite([v for _, _, v in parse_metrics(text)]).all()
