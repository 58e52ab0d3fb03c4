"""Dynamic batching semantics (Triton's): a batch leaves when it reaches a preferred size or when
its oldest request has waited max_queue_delay; requests of different shapes are not merged; a full
queue rejects at once. Runs its own server over a repository of batching configs.

Nothing here measures wall-clock time on the client, which a slow or busy machine stretches: the
assertions are on the server's counters (executions, inferences, queue time, failures) and on the
order of answers, which hold at any speed and break when batching does."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

import extra_models
from conftest import (DEPLOY_MODELS, QuiverServer, assert_same, error_message, json_infer_body,
                      metric_sum, mlp_batch, parse_metrics)

MLP_IO = """\
input [ { name: "input" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
CONFIGS = {
    # waits up to 300 ms to fill a batch of 8
    "mlp_delay": "max_batch_size: 8\n" + MLP_IO +
                 "dynamic_batching { max_queue_delay_microseconds: 300000 preferred_batch_size: [ 8 ] }\n",
    # a long window, so that requests from several clients surely meet in one batch; it still
    # leaves as soon as it holds the preferred 8 rows (and a request of 8 rows does not wait)
    "mlp_mixed": "max_batch_size: 8\n" + MLP_IO +
                 "dynamic_batching { max_queue_delay_microseconds: 2000000 preferred_batch_size: [ 8 ] }\n",
    # a queue of at most 2 waiting requests, each batch waiting up to 1 s
    "mlp_small_queue": "max_batch_size: 8\n" + MLP_IO +
                       "dynamic_batching { max_queue_delay_microseconds: 1000000 preferred_batch_size: [ 8 ] "
                       "default_queue_policy { max_queue_size: 2 } }\n",
    "var_len": """max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "total" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 200000 preferred_batch_size: [ 8 ] }
""",
}


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batching")
    repo = tmp / "models"
    for name in ("mlp_delay", "mlp_mixed", "mlp_small_queue"):
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(DEPLOY_MODELS / "mlp" / "1" / "model.onnx", repo / name / "1" / "model.onnx")
    (repo / "var_len" / "1").mkdir(parents=True)
    (repo / "var_len" / "1" / "model.onnx").write_bytes(extra_models.build_var_len().SerializeToString())
    for name, cfg in CONFIGS.items():
        (repo / name / "config.pbtxt").write_text(cfg)
    srv = QuiverServer(repo, tmp / "quiver.log").start(timeout=30)
    yield srv
    rc = srv.terminate()
    assert rc == 0, f"exit code {rc}:\n{srv.log_tail()}"


def _infer(srv, model, name, x):
    return requests.post(f"{srv.http_url}/v2/models/{model}/infer", json=json_infer_body(name, x), timeout=15)


def _counter(srv, name, model, **labels):
    return metric_sum(parse_metrics(requests.get(srv.http_url + "/metrics", timeout=5).text),
                      name, model=model, **labels) or 0


COUNTERS = ("nv_inference_exec_count", "nv_inference_count", "nv_inference_queue_duration_us")


def _counters(srv, model):
    samples = parse_metrics(requests.get(srv.http_url + "/metrics", timeout=5).text)
    return {name: metric_sum(samples, name, model=model) or 0 for name in COUNTERS}


def _since(srv, model, before):
    """How much each of COUNTERS grew since `before` (a _counters result)."""
    now = _counters(srv, model)
    return {name: now[name] - before[name] for name in COUNTERS}


def _mlp_ref(srv, reference_for_repo, x):
    return reference_for_repo(srv.repo).run("mlp_delay", {"input": x})["probabilities"]


def test_concurrent_requests_are_merged(batch_server, reference_for_repo):
    srv = batch_server
    execs = _counter(srv, "nv_inference_exec_count", "mlp_delay")
    xs = [mlp_batch(1, seed=i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda x: _infer(srv, "mlp_delay", "input", x), xs))
    for x, r in zip(xs, results):
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["shape"] == [1, 4]
        assert_same(np.asarray(out["data"], np.float32).reshape(1, 4), _mlp_ref(srv, reference_for_repo, x))
    d = _counter(srv, "nv_inference_exec_count", "mlp_delay") - execs
    assert d <= 2, f"8 concurrent 1-row requests ran as {d} executions; a 300 ms batching window should merge them"


def test_lone_request_waits_for_the_queue_delay(batch_server):
    """A lone 1-row request runs alone once it has waited max_queue_delay (300 ms). The server's
    own queue time shows it: the delay timer never fires early, so it is at least 300 ms at any
    machine speed, and about 0 when the batcher does not wait."""
    srv = batch_server
    before = _counters(srv, "mlp_delay")
    r = _infer(srv, "mlp_delay", "input", mlp_batch(1))
    assert r.status_code == 200, r.text
    d = _since(srv, "mlp_delay", before)
    assert (d["nv_inference_exec_count"], d["nv_inference_count"]) == (1, 1), d
    assert d["nv_inference_queue_duration_us"] >= 300_000, (
        f"a lone request left the queue after {d['nv_inference_queue_duration_us']} µs; max_queue_delay is 300 ms"
    )


def test_preferred_size_request_leaves_at_once(batch_server):
    """A request of the preferred size (8 rows) leaves without waiting for the 2 s window: had it
    waited, the server would count at least 2 s of queue time for it."""
    srv = batch_server
    before = _counters(srv, "mlp_mixed")
    r = _infer(srv, "mlp_mixed", "input", mlp_batch(8))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"] == [8, 4]
    d = _since(srv, "mlp_mixed", before)
    assert (d["nv_inference_exec_count"], d["nv_inference_count"]) == (1, 8), d
    assert d["nv_inference_queue_duration_us"] < 2_000_000, (
        f"a request of the preferred batch size waited {d['nv_inference_queue_duration_us']} µs: the whole 2 s window"
    )


def test_different_shapes_are_not_merged(batch_server):
    lengths = [1, 2, 3, 5, 8, 13, 3, 5]
    xs = [np.random.default_rng(n).standard_normal((1, n)).astype(np.float32) for n in lengths]
    before = _counters(batch_server, "var_len")
    with ThreadPoolExecutor(len(xs)) as pool:
        results = list(pool.map(lambda x: _infer(batch_server, "var_len", "x", x), xs))
    for x, r in zip(xs, results):
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["shape"] == [1, 1]
        np.testing.assert_allclose(out["data"], [x.sum()], rtol=1e-5, atol=1e-5)
    d = _since(batch_server, "var_len", before)
    # 6 distinct lengths: at least 6 executions (only equal lengths may share one).
    assert d["nv_inference_count"] == len(xs), d
    assert len(set(lengths)) <= d["nv_inference_exec_count"] <= len(xs), d


def test_full_queue_rejects_at_once(batch_server):
    """6 concurrent requests into a queue of 2 whose batch waits 1 s: the extra ones get 429 at
    once, that is, before any accepted request (which waits out the delay) is answered."""
    srv = batch_server
    rejected_before = _counter(srv, "nv_inference_request_failure", "mlp_small_queue", reason="REJECTED")
    start = threading.Barrier(6)
    answered = []  # status codes in the order the answers arrived
    lock = threading.Lock()

    def send(i):
        start.wait(timeout=10)
        r = _infer(srv, "mlp_small_queue", "input", mlp_batch(1, seed=i))
        with lock:
            answered.append(r.status_code)
        return r

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(send, range(6)))
    codes = sorted(r.status_code for r in results)
    rejected = [r for r in results if r.status_code != 200]
    assert rejected, f"6 concurrent requests into a queue of 2 (1 s delay): none rejected ({codes})"
    for r in rejected:
        assert r.status_code == 429, (r.status_code, r.text)
        assert r.headers.get("Retry-After"), "a 429 tells the client when to retry"
        error_message(r)
    assert any(r.status_code == 200 for r in results), codes
    assert answered == sorted(answered, key=lambda code: code == 200), (
        f"answers arrived as {answered}: a rejection came after an accepted request, so it waited for the queue"
    )
    rejected_now = _counter(srv, "nv_inference_request_failure", "mlp_small_queue", reason="REJECTED")
    assert rejected_now - rejected_before == len(rejected), "each 429 counts as a REJECTED failure"


def test_json_binary_and_grpc_requests_share_one_batch(batch_server, reference_for_repo):
    """Requests of every protocol, with different row counts, are merged into one batch, and
    each gets exactly its own rows back (checked against onnxruntime on the same rows alone)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    srv = batch_server
    grpc = grpcclient.InferenceServerClient(url=srv.grpc_addr)
    assert grpc.is_server_ready()  # the channel is up before timing matters

    def via_json(x):
        r = _infer(srv, "mlp_mixed", "input", x)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        return np.asarray(out["data"], np.float32).reshape(out["shape"])

    def via_binary(x):
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        # tritonclient.http is gevent-based: one client per thread.
        http = httpclient.InferenceServerClient(url=srv.http_addr)
        return http.infer("mlp_mixed", [inp]).as_numpy("probabilities")

    def via_grpc(x):
        inp = grpcclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return grpc.infer("mlp_mixed", [inp]).as_numpy("probabilities")

    # 1 + 2 + 1 + 2 + 1 + 1 = 8 rows: the preferred size, so the batch leaves when all arrived.
    plan = [(via_json, 1), (via_binary, 2), (via_grpc, 1), (via_json, 2), (via_binary, 1), (via_grpc, 1)]
    xs = [mlp_batch(rows, seed=100 + i) for i, (_, rows) in enumerate(plan)]
    execs = _counter(srv, "nv_inference_exec_count", "mlp_mixed")
    count = _counter(srv, "nv_inference_count", "mlp_mixed")
    with ThreadPoolExecutor(len(plan)) as pool:
        futures = [pool.submit(send, x) for (send, _), x in zip(plan, xs)]
        outputs = [f.result(timeout=30) for f in futures]
    for x, out in zip(xs, outputs):
        assert out.shape == (x.shape[0], 4)
        assert_same(out, _mlp_ref(srv, reference_for_repo, x))
    assert _counter(srv, "nv_inference_count", "mlp_mixed") - count == 8
    executions = _counter(srv, "nv_inference_exec_count", "mlp_mixed") - execs
    assert executions == 1, f"6 requests (8 rows) within a 2 s window ran as {executions} executions"
