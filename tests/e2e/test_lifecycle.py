"""Model lifecycle end to end: hot swap, canary split, promote/rollback and version unload under
continuous load with zero failed requests; failing loads that leave serving untouched; automatic
rollback of a failing canary; scale to zero and cold start under a burst; model control modes
(none/explicit/poll) over HTTP and gRPC; warmup before READY.

Every test runs its own server over its own copy of the models (files are changed on disk)."""

from __future__ import annotations

import json
import math
import re
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

import lifecycle_models as lm
from conftest import (REPO_ROOT, QuiverServer, Reference, error_message, json_infer_body,
                      metric_sum, mlp_batch, parse_metrics)

REVISION = "x-quiver-revision"
BENCH_RESULTS = REPO_ROOT / "target" / "bench-results"


# --------------------------------------------------------------------------------------------
# Server and API helpers
# --------------------------------------------------------------------------------------------


@contextmanager
def serving(repo: Path, log: Path, *args: str, timeout: float = 30.0):
    """A QuiverServer over `repo` with extra `args`; stopped at the end (SIGTERM must exit 0)."""
    srv = QuiverServer(repo, log, list(args)).start(timeout)
    try:
        yield srv
    except BaseException:
        srv.terminate()
        srv.kill()
        raise
    alive = srv.proc.poll() is None
    rc = srv.terminate()
    assert alive, f"quiver died during the test (exit {srv.proc.returncode}):\n{srv.log_tail()}"
    assert rc == 0, f"quiver did not exit 0 on SIGTERM (rc={rc}):\n{srv.log_tail()}"


def post(srv, path: str, body=None, **kw) -> requests.Response:
    return requests.post(srv.http_url + path, json=body, timeout=30, **kw)


def get(srv, path: str) -> requests.Response:
    return requests.get(srv.http_url + path, timeout=10)


def ok(resp: requests.Response) -> dict | list:
    assert resp.status_code == 200, f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text[:500]}"
    return resp.json()


def index(srv, ready: bool = False) -> list[dict]:
    return ok(post(srv, "/v2/repository/index", {"ready": True} if ready else {}))


def rows(srv, model: str) -> dict:
    """The index rows of `model` by version ("" for a row without one)."""
    return {r.get("version", ""): r for r in index(srv) if r["name"] == model}


def load(srv, model: str, config: dict | None = None) -> requests.Response:
    body = {"parameters": {"config": json.dumps(config)}} if config is not None else None
    return post(srv, f"/v2/repository/models/{model}/load", body)


def traffic(srv, model: str, body: dict | None = None, action: str = "") -> dict:
    path = f"/v2/repository/models/{model}/traffic" + (f"/{action}" if action else "")
    return ok(post(srv, path, body) if body is not None or action else get(srv, path))


def metrics(srv) -> list:
    return parse_metrics(get(srv, "/metrics").text)


def poll_until(fn, timeout: float, what: str, interval: float = 0.05):
    """Calls fn() until it returns something truthy; fails after `timeout` s with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(interval)


def infer(srv, model: str, x: np.ndarray, name: str = "input", version=None, headers=None):
    path = f"/v2/models/{model}/versions/{version}/infer" if version else f"/v2/models/{model}/infer"
    return post(srv, path, json_infer_body(name, x), headers=headers)


def outputs_of(resp: requests.Response, name: str) -> np.ndarray:
    out = {o["name"]: o for o in resp.json()["outputs"]}[name]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


# --------------------------------------------------------------------------------------------
# Continuous load
# --------------------------------------------------------------------------------------------


@dataclass
class Rec:
    sent: float
    received: float
    status: int  # 0: no HTTP response (connection error, timeout)
    version: str | None = None
    revision: str | None = None
    data: tuple | None = None
    error: str | None = None


class Load:
    """`threads` clients (one requests.Session each) sending the same unversioned inference
    request back to back, recording every answer."""

    def __init__(self, url: str, body: dict, threads: int = 6, output: str = "probabilities"):
        self.url, self.output = url, output
        self.body = json.dumps(body).encode()
        self.records: list[Rec] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        s = requests.Session()
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                r = s.post(self.url, data=self.body, headers=headers, timeout=20)
            except requests.RequestException as e:
                self.records.append(Rec(t0, time.monotonic(), 0, error=repr(e)))
                continue
            t1 = time.monotonic()
            if r.status_code == 200:
                b = r.json()
                out = {o["name"]: o for o in b["outputs"]}[self.output]
                self.records.append(Rec(t0, t1, 200, b.get("model_version"), r.headers.get(REVISION),
                                        tuple(out["data"])))
            else:
                self.records.append(Rec(t0, t1, r.status_code, revision=r.headers.get(REVISION),
                                        error=r.text[:300]))
        s.close()

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def window(self, start: float, end: float = math.inf) -> list[Rec]:
        """The requests sent after `start` and answered before `end`."""
        return [r for r in list(self.records) if r.sent >= start and r.received <= end]

    def wait(self, since: float, n: int, timeout: float = 20.0) -> None:
        """Until `n` requests sent after `since` have been answered."""
        poll_until(lambda: len(self.window(since)) >= n, timeout, f"{n} answers after t={since:.3f}")

    def failures(self) -> list[Rec]:
        return [r for r in self.records if r.status != 200]


@dataclass
class Phase:
    name: str
    start: float  # the change that opened it had returned
    end: float = math.inf  # the next change began


class Phases:
    """Records when each change (an API call) began and returned."""

    def __init__(self, load: Load, per_phase: int):
        self.load, self.per_phase = load, per_phase
        self.list: list[Phase] = []

    def change(self, name: str, fn):
        t0 = time.monotonic()
        result = fn()
        t1 = time.monotonic()
        if self.list:
            self.list[-1].end = t0
        self.list.append(Phase(name, t1))
        self.load.wait(t1, self.per_phase)
        return result

    def records(self, name: str) -> list[Rec]:
        p = next(p for p in self.list if p.name == name)
        return self.load.window(p.start, p.end)


def versions_of(recs: list[Rec]) -> Counter:
    return Counter(r.version for r in recs)


# --------------------------------------------------------------------------------------------
# 1. Hot swap, canary, rollback, promote, unload under continuous load
# --------------------------------------------------------------------------------------------


def test_rollout_under_load_has_zero_failures(tmp_path):
    repo = lm.mlp_repo(tmp_path / "models", versions=(1,))
    x = mlp_batch(1, seed=5)
    expected = {v: Reference(lm.DEPLOY_MODELS).run("mlp", {"input": x}, v)["probabilities"].flatten()
                for v in ("1", "2")}
    threads = 6
    per_phase = 500

    with serving(repo, tmp_path / "quiver.log", "--model-control-mode", "explicit",
                 "--load-model", "mlp") as srv:
        assert set(rows(srv, "mlp")) == {"1"}
        url = f"{srv.http_url}/v2/models/mlp/infer"
        with Load(url, json_infer_body("input", x), threads=threads) as lg:
            ph = Phases(lg, per_phase)
            t_begin = time.monotonic()
            ph.change("v1 only", lambda: None)

            def hot_swap():
                lm.add_mlp_version(repo, 2)
                return load_ok(srv)

            ph.change("hot swap to v2", hot_swap)
            assert {k: r["state"] for k, r in rows(srv, "mlp").items()} == {"1": "READY", "2": "READY"}
            assert _loads(srv, "mlp") == {"1": 1, "2": 1}, "the reload reloaded unchanged version 1"

            st = ph.change("canary 10%", lambda: traffic(
                srv, "mlp", {"canary_version": 2, "stable_version": 1, "canary_traffic_percent": 10}))
            assert st["traffic"] == [{"tag": "stable", "version": "1", "percent": 90},
                                     {"tag": "canary", "version": "2", "percent": 10}], st

            st = ph.change("canary 50%", lambda: traffic(
                srv, "mlp", {"canary_version": 2, "stable_version": 1, "canary_traffic_percent": 50}))
            assert [t["percent"] for t in st["traffic"]] == [50, 50], st
            # A gRPC request pinned to the canary, while the split runs (counted server-side too).
            with grpcclient.InferenceServerClient(srv.grpc_addr) as gc:
                i = grpcclient.InferInput("input", list(x.shape), "FP32")
                i.set_data_from_numpy(x)
                res = gc.infer("mlp", [i], headers={REVISION: "canary"}, client_timeout=10)
                assert res.get_response().model_version == "2"
                np.testing.assert_allclose(res.as_numpy("probabilities").flatten(), expected["2"],
                                           rtol=1e-4, atol=1e-5)
            pinned_canary = 1

            st = ph.change("rolled back", lambda: traffic(srv, "mlp", action="rollback"))
            assert st["traffic"] == [] and st["rollbacks"] == 1 and st["default_version"] == "1", st

            ph.change("canary 100%", lambda: traffic(
                srv, "mlp", {"canary_version": 2, "stable_version": 1, "canary_traffic_percent": 100}))

            st = ph.change("promoted", lambda: traffic(srv, "mlp", action="promote"))
            assert st["traffic"] == [] and st["default_version"] == "2", st
            assert (st["latest_rolledout_version"], st["previous_rolledout_version"]) == ("2", "1"), st
            counters = _traffic_counters(srv)  # v1 is about to go: read its counters now

            ph.change("v1 unloaded", lambda: load_ok(srv, lm.mlp_config_json(versions=[2])))
            t_end = time.monotonic()

        # ---- every single request succeeded, including those that straddled a change
        total = len(lg.records)
        rate = total / (t_end - t_begin)
        print(f"\n{total} requests in {t_end - t_begin:.1f} s ({rate:.0f}/s) over {threads} clients")
        fails = lg.failures()
        assert not fails, f"{len(fails)} of {total} requests failed, e.g. {fails[:3]}\n{srv.log_tail()}"
        for r in lg.records:  # the answer is the one of the version that says it answered
            np.testing.assert_allclose(r.data, expected[r.version], rtol=1e-4, atol=1e-5,
                                       err_msg=f"answer of version {r.version}")

        # ---- what each phase served
        def only(name, version, revision=None):
            recs = ph.records(name)
            assert len(recs) >= per_phase - threads, (name, len(recs))
            assert versions_of(recs) == {version: len(recs)}, (name, versions_of(recs))
            assert {r.revision for r in recs} == {revision}, (name, Counter(r.revision for r in recs))

        only("v1 only", "1")
        only("hot swap to v2", "2")
        only("rolled back", "1")  # the split ended: no revision header
        only("canary 100%", "2", "canary")
        only("promoted", "2")
        only("v1 unloaded", "2")

        for name, percent in (("canary 10%", 10), ("canary 50%", 50)):
            recs = ph.records(name)
            n = len(recs)
            share = 100 * versions_of(recs)["2"] / n
            # The split is exact per 100 consecutive requests; the window misses up to `threads`
            # requests at each edge.
            tol = 100 * (2 * threads + 2) / n + 1
            print(f"{name}: {n} requests, v2 share {share:.1f}% (want {percent} ± {tol:.1f})")
            assert abs(share - percent) <= tol, f"{name}: v2 got {share:.1f}% of {n} requests"
            for r in recs:
                assert r.revision == {"1": "stable", "2": "canary"}[r.version], r

        # ---- the server counted the same split as the clients saw
        seen = Counter((r.version, r.revision) for r in lg.records if r.revision)
        assert counters == {("1", "stable"): seen[("1", "stable")],
                            ("2", "canary"): seen[("2", "canary")] + pinned_canary}, (counters, seen)
        assert _traffic_counters(srv) == counters, "traffic counted after the split ended"
        m = metrics(srv)
        served = versions_of(lg.records)
        assert {v: metric_sum(m, "nv_inference_request_success", model="mlp", version=v) for v in "12"} \
            == {"1": served["1"], "2": served["2"] + pinned_canary}, served

        st = traffic(srv, "mlp")
        assert st["ready_versions"] == ["2"] and st["default_version"] == "2", st
        assert {k: r["state"] for k, r in rows(srv, "mlp").items() if r["state"] == "READY"} == {"2": "READY"}
        assert get(srv, "/v2/models/mlp/versions/1/ready").status_code != 200


def load_ok(srv, config: dict | None = None) -> dict:
    return ok(load(srv, "mlp", config))


def _traffic_counters(srv) -> dict:
    return {(l["version"], l["revision"]): int(v) for n, l, v in metrics(srv)
            if n == "quiver_traffic_requests_total" and l.get("model") == "mlp"}


# --------------------------------------------------------------------------------------------
# 2. Failing loads leave serving untouched
# --------------------------------------------------------------------------------------------


def test_failing_version_and_broken_config_do_not_disturb_serving(tmp_path):
    repo = lm.mlp_repo(tmp_path / "models", versions=(1, 2))
    x = mlp_batch(1, seed=6)
    with serving(repo, tmp_path / "quiver.log", "--model-control-mode", "explicit",
                 "--load-model", "mlp") as srv:
        with Load(f"{srv.http_url}/v2/models/mlp/infer", json_infer_body("input", x)) as lg:
            lg.wait(0, 100)

            # a corrupt version 3
            (repo / "mlp" / "3").mkdir()
            (repo / "mlp" / "3" / "model.onnx").write_bytes(b"\x08\x07not an onnx model" * 10)
            r = load(srv, "mlp")
            assert r.status_code == 400, r.text
            msg = error_message(r)
            assert "3" in msg and "model.onnx" in msg, msg
            t = time.monotonic()
            lg.wait(t, 100)
            idx = rows(srv, "mlp")
            assert idx["1"]["state"] == idx["2"]["state"] == "READY", idx
            assert idx["3"]["state"] == "UNAVAILABLE" and "model.onnx" in idx["3"]["reason"], idx
            assert {(r["name"], r["version"]) for r in index(srv, ready=True)} == {("mlp", "1"), ("mlp", "2")}
            assert get(srv, "/v2/models/mlp/versions/3/ready").status_code == 400
            assert get(srv, "/v2/models/mlp/ready").status_code == 200
            assert get(srv, "/v2/models/mlp/versions/2/ready").status_code == 200
            assert traffic(srv, "mlp")["ready_versions"] == ["1", "2"]

            # a broken config.pbtxt
            shutil.rmtree(repo / "mlp" / "3")
            good = (repo / "mlp" / "config.pbtxt").read_text()
            (repo / "mlp" / "config.pbtxt").write_text(good + "\nthis is { not a config\n")
            r = load(srv, "mlp")
            assert r.status_code == 400, r.text
            assert "config.pbtxt" in error_message(r)
            t = time.monotonic()
            lg.wait(t, 100)
            idx = rows(srv, "mlp")
            assert idx["1"]["state"] == idx["2"]["state"] == "READY", idx
            assert idx[""]["state"] == "UNAVAILABLE" and "config.pbtxt" in idx[""]["reason"], idx

            # fixed: the failure rows go
            (repo / "mlp" / "config.pbtxt").write_text(good)
            load_ok(srv)
            t = time.monotonic()
            lg.wait(t, 100)
            assert {k: r["state"] for k, r in rows(srv, "mlp").items()} == {"1": "READY", "2": "READY"}

        fails = lg.failures()
        assert not fails, f"{len(fails)} of {len(lg.records)} failed, e.g. {fails[:3]}"
        assert versions_of(lg.records) == {"2": len(lg.records)}, versions_of(lg.records)
        assert infer(srv, "mlp", x, version=1).status_code == 200


# --------------------------------------------------------------------------------------------
# 3. Automatic rollback of a failing canary
# --------------------------------------------------------------------------------------------


def test_failing_canary_is_rolled_back_automatically(tmp_path):
    repo = lm.flaky_repo(tmp_path / "models")
    good = np.array([1, 2, 3, 4], dtype=np.float32)  # both versions answer
    short = np.array([1, 2, 3], dtype=np.float32)  # the canary fails in the backend
    with serving(repo, tmp_path / "quiver.log") as srv:
        # The premise: version 2 fails at execution (500), version 1 answers.
        assert infer(srv, "flaky", short, "x", version=2).status_code == 500
        assert infer(srv, "flaky", short, "x", version=1).status_code == 200

        rule = {"max_error_rate_increase": 0.2, "window_s": 5, "min_requests": 10}
        st = traffic(srv, "flaky", {"canary_version": 2, "stable_version": 1,
                                    "canary_traffic_percent": 50, "rollback": rule})
        assert len(st["traffic"]) == 2 and st["rollback_rule"]["min_requests"] == 10, st

        # Client errors do not count as canary failures: 400s pinned to the canary, good requests
        # pinned to stable and unversioned good requests for more than a second (the rule is
        # checked at most once per second) leave the split in place.
        t_end = time.monotonic() + 1.3
        n = 0
        while time.monotonic() < t_end or n < 15:
            r = post(srv, "/v2/models/flaky/infer", json_infer_body("wrong_name", good),
                     headers={REVISION: "canary"})
            assert r.status_code == 400, r.text
            r = infer(srv, "flaky", good, "x", headers={REVISION: "stable"})
            assert r.status_code == 200 and r.headers[REVISION] == "stable", r.text
            r = infer(srv, "flaky", good, "x")
            assert r.status_code == 200, r.text
            v = int(r.json()["model_version"])
            np.testing.assert_array_equal(outputs_of(r, "y"), lm.flaky_expected(v, good))
            n += 1
        st = traffic(srv, "flaky")
        assert len(st["traffic"]) == 2 and st["rollbacks"] == 0, st

        # Now the canary fails: it is rolled back within seconds.
        statuses = Counter()
        deadline = time.monotonic() + 10
        while traffic(srv, "flaky")["traffic"]:
            assert time.monotonic() < deadline, f"no rollback after {statuses}"
            r = infer(srv, "flaky", short, "x")
            rev = r.headers.get(REVISION)
            statuses[(r.status_code, rev)] += 1
            if r.status_code == 200:
                assert r.json()["model_version"] == "1", r.text
        # (error responses carry no revision header: test_revision_header_on_error_responses)
        assert set(statuses) <= {(500, "canary"), (500, None), (200, "stable")}, statuses
        failed = statuses[(500, "canary")] + statuses[(500, None)]
        assert failed >= 3 and statuses[(200, "stable")] >= 3, statuses

        st = traffic(srv, "flaky")
        assert st["traffic"] == [] and st["rollbacks"] == 1, st
        assert st["default_version"] == "1" and st["ready_versions"] == ["1", "2"], st
        assert st["last_rollback_reason"].startswith("automatic:"), st
        print(f"\nrolled back after {dict(statuses)}: {st['last_rollback_reason']}")

        for _ in range(20):
            r = infer(srv, "flaky", short, "x")
            assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
            assert REVISION not in r.headers
        assert infer(srv, "flaky", short, "x", headers={REVISION: "canary"}).status_code == 400

        m = metrics(srv)
        assert metric_sum(m, "quiver_canary_rollbacks_total", model="flaky", trigger="auto") == 1
        assert not metric_sum(m, "quiver_canary_rollbacks_total", model="flaky", trigger="api")


def test_split_from_config_parameters_is_exact_and_percent_zero_pins_only(tmp_path):
    repo = lm.flaky_repo(tmp_path / "models", "".join(lm.param(k, v) for k, v in (
        ("canary_version", 2), ("canary_traffic_percent", 25), ("stable_version", 1),
        ("rollback_max_error_rate_increase", 0.5), ("rollback_window_s", 30),
        ("rollback_min_requests", 50))))
    good = np.array([1, 2, 3, 4], dtype=np.float32)

    def send(n, headers=None) -> Counter:
        seen = Counter()
        for _ in range(n):
            r = infer(srv, "flaky", good, "x", headers=headers)
            assert r.status_code == 200, r.text
            v = r.json()["model_version"]
            np.testing.assert_array_equal(outputs_of(r, "y"), lm.flaky_expected(int(v), good))
            seen[(v, r.headers.get(REVISION))] += 1
        return seen

    with serving(repo, tmp_path / "quiver.log") as srv:
        st = traffic(srv, "flaky")
        assert st["traffic"] == [{"tag": "stable", "version": "1", "percent": 75},
                                 {"tag": "canary", "version": "2", "percent": 25}], st
        assert st["rollback_rule"] == {"max_error_rate_increase": 0.5, "max_p99_ratio": None,
                                       "window_s": 30, "min_requests": 50}, st
        # exact over 100 consecutive requests, whatever the phase of the interleaving
        assert send(100) == {("1", "stable"): 75, ("2", "canary"): 25}
        assert send(100) == {("1", "stable"): 75, ("2", "canary"): 25}

        st = traffic(srv, "flaky", {"canary_version": 2, "canary_traffic_percent": 0})
        assert [t["percent"] for t in st["traffic"]] == [100, 0], st
        assert send(50) == {("1", "stable"): 50}
        assert send(3, {REVISION: "canary"}) == {("2", "canary"): 3}
        assert send(3, {REVISION: "stable"}) == {("1", "stable"): 3}
        r = infer(srv, "flaky", good, "x", version=2)  # a version URL bypasses the split
        assert r.status_code == 200 and r.json()["model_version"] == "2", r.text

        st = traffic(srv, "flaky", action="promote")
        assert st["traffic"] == [] and st["default_version"] == "2", st
        assert (st["latest_rolledout_version"], st["previous_rolledout_version"]) == ("2", "1"), st
        assert send(5) == {("2", None): 5}
        for action in ("promote", "rollback"):  # nothing to promote or roll back any more
            r = post(srv, f"/v2/repository/models/flaky/traffic/{action}")
            assert r.status_code == 400, (action, r.text)
            error_message(r)
        r = infer(srv, "flaky", good, "x", headers={REVISION: "canary"})
        assert r.status_code == 400 and "canary" in error_message(r), r.text
        m = metrics(srv)
        assert not metric_sum(m, "quiver_canary_rollbacks_total", model="flaky")
        assert metric_sum(m, "quiver_traffic_requests_total", model="flaky", revision="canary") == 25 * 2 + 3


@pytest.mark.parametrize("case", ["v2 error response", "v1 predict", "grpc"])
def test_every_answer_routed_through_a_split_names_its_revision(tmp_path, case):
    """"Responses routed through a split carry the side that served them" (README): V2 HTTP
    successes (test_rollout_under_load_has_zero_failures), and also a V2 error from the canary,
    a KServe V1 answer (whose body names no version) and gRPC answers (metadata)."""
    repo = lm.flaky_repo(lm.mlp_repo(tmp_path / "models", versions=(1, 2)))
    with serving(repo, tmp_path / "quiver.log") as srv:
        for model in ("mlp", "flaky"):
            traffic(srv, model, {"canary_version": 2, "stable_version": 1, "canary_traffic_percent": 50})
        sides = []
        for _ in range(4):
            if case == "v2 error response":
                r = infer(srv, "flaky", np.array([1, 2, 3], np.float32), "x")
                if r.status_code == 500:
                    sides.append(r.headers.get(REVISION))
            elif case == "v1 predict":
                r = post(srv, "/v1/models/mlp:predict", {"instances": mlp_batch(1).tolist()})
                assert r.status_code == 200, r.text
                sides.append(r.headers.get(REVISION))
            else:
                req = service_pb2.ModelInferRequest(model_name="mlp")
                req.inputs.add(name="input", datatype="FP32", shape=[1, 16])
                req.raw_input_contents.append(mlp_batch(1).tobytes())
                with grpc.insecure_channel(srv.grpc_addr) as ch:
                    resp, call = service_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer.with_call(req)
                md = dict(call.initial_metadata()) | dict(call.trailing_metadata())
                sides.append((resp.model_version, md.get(REVISION)))
        if case == "v2 error response":
            assert sides == ["canary", "canary"], sides
        elif case == "v1 predict":
            assert Counter(sides) == {"canary": 2, "stable": 2}, sides
        else:
            assert Counter(sides) == {("1", "stable"): 2, ("2", "canary"): 2}, sides


# --------------------------------------------------------------------------------------------
# 4. Scale to zero, and back under a burst
# --------------------------------------------------------------------------------------------


def _scaled(srv) -> dict:
    return {v: r.get("reason") == "scaled to zero" and r["state"] == "READY"
            for v, r in rows(srv, "mlp").items()}


def _cold_metrics(srv, version: str) -> tuple[float, float]:
    m = metrics(srv)
    return (metric_sum(m, "quiver_model_cold_starts_total", model="mlp", version=version) or 0,
            metric_sum(m, "quiver_model_last_cold_start_us", model="mlp", version=version) or 0)


def test_scale_to_zero_and_cold_start_under_burst(tmp_path):
    repo = lm.mlp_repo(tmp_path / "models", versions=(1, 2), extra_config=(
        lm.param("min_instances", 0) + lm.param("idle_grace_period_s", 1)))
    x = mlp_batch(1, seed=7)
    want = Reference(repo).run("mlp", {"input": x}, 2)["probabilities"]
    with serving(repo, tmp_path / "quiver.log") as srv:
        # Under steady light traffic (one request per 200 ms for 2.5 grace periods) the model
        # stays up. Idleness is the model's: version 1, never asked, stays up with version 2.
        t_end = time.monotonic() + 2.5
        while time.monotonic() < t_end:
            assert infer(srv, "mlp", x).status_code == 200
            assert _scaled(srv) == {"1": False, "2": False}, rows(srv, "mlp")
            time.sleep(0.2)  # the traffic pattern itself, not a wait for a condition
        assert _cold_metrics(srv, "2")[0] == 0

        # Idle: version 2 goes to zero too.
        poll_until(lambda: _scaled(srv) == {"1": True, "2": True}, 10, "both versions scaled to zero")
        assert metric_sum(metrics(srv), "quiver_model_scale_to_zero_total", model="mlp") >= 1
        for path in ("/v2/models/mlp", "/v2/models/mlp/ready", "/v2/models/mlp/versions/2/ready",
                     "/v2/models/mlp/config", "/v2/health/ready"):
            assert get(srv, path).status_code == 200, path
        assert _scaled(srv) == {"1": True, "2": True}, "metadata/readiness loaded the model"
        assert _cold_metrics(srv, "2")[0] == 0

        # One request: a cold start.
        t0 = time.monotonic()
        r = infer(srv, "mlp", x)
        first_ms = 1e3 * (time.monotonic() - t0)
        assert r.status_code == 200 and r.json()["model_version"] == "2", r.text
        np.testing.assert_allclose(outputs_of(r, "probabilities"), want, rtol=1e-4, atol=1e-5)
        cold, single_us = _cold_metrics(srv, "2")
        assert cold == 1 and single_us > 0
        assert _scaled(srv) == {"1": True, "2": False}

        # Back to zero, then a burst of 50 concurrent requests: one cold start, all served.
        poll_until(lambda: _scaled(srv)["2"], 10, "version 2 scaled to zero again")
        n = 50
        barrier = threading.Barrier(n)
        body = json.dumps(json_infer_body("input", x)).encode()

        def one(_):
            s = requests.Session()
            s.get(srv.http_url + "/v2/health/live", timeout=10)  # connect before the burst
            barrier.wait(10)
            t = time.monotonic()
            r = s.post(srv.http_url + "/v2/models/mlp/infer", data=body, timeout=30,
                       headers={"Content-Type": "application/json"})
            return r, time.monotonic() - t

        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(one, range(n)))
        for r, _ in results:
            assert r.status_code == 200 and r.json()["model_version"] == "2", r.text
            np.testing.assert_allclose(outputs_of(r, "probabilities"), want, rtol=1e-4, atol=1e-5)
        cold2, burst_us = _cold_metrics(srv, "2")
        assert cold2 == 2, f"{cold2 - 1} cold starts for one burst"
        assert _cold_metrics(srv, "1")[0] == 0
        lat = sorted(1e3 * t for _, t in results)

    figures = {
        "model": "mlp", "version": "2", "idle_grace_period_s": 1,
        "single_request": {"cold_start_us": single_us, "client_latency_ms": round(first_ms, 2)},
        "burst": {"concurrent_requests": n, "cold_start_us": burst_us,
                  "client_latency_ms_p50": round(lat[n // 2], 2),
                  "client_latency_ms_max": round(lat[-1], 2)},
    }
    print("\ncold start:", json.dumps(figures))
    BENCH_RESULTS.mkdir(parents=True, exist_ok=True)
    (BENCH_RESULTS / "cold_start.json").write_text(json.dumps(figures, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# 5. Model control modes
# --------------------------------------------------------------------------------------------


def test_none_mode_refuses_load_and_unload(tmp_path):
    repo = lm.mlp_repo(tmp_path / "models", versions=(1,))
    with serving(repo, tmp_path / "quiver.log") as srv:
        for action in ("load", "unload"):
            r = post(srv, f"/v2/repository/models/mlp/{action}")
            assert r.status_code == 400, (action, r.text)
            assert "--model-control-mode explicit" in error_message(r), r.text
        with grpcclient.InferenceServerClient(srv.grpc_addr) as gc:
            for call in (lambda: gc.load_model("mlp"), lambda: gc.unload_model("mlp"),
                         lambda: gc.load_model("mlp", config=json.dumps(lm.mlp_config_json()))):
                with pytest.raises(InferenceServerException) as e:
                    call()
                assert e.value.status() == "StatusCode.INVALID_ARGUMENT", e.value
            assert gc.is_model_ready("mlp")
        hc = httpclient.InferenceServerClient(srv.http_addr)
        with pytest.raises(InferenceServerException):
            hc.unload_model("mlp")
        hc.close()
        assert {k: r["state"] for k, r in rows(srv, "mlp").items()} == {"1": "READY"}
        assert infer(srv, "mlp", mlp_batch(1)).status_code == 200


def test_explicit_mode_load_unload_over_grpc_and_http(tmp_path):
    repo = lm.mlp_repo(tmp_path / "models", versions=(1, 2), models=("mlp", "iris"))
    with serving(repo, tmp_path / "quiver.log", "--model-control-mode", "explicit",
                 "--load-model", "mlp") as srv:
        # Only mlp is loaded; iris, in the repository but never loaded, is listed as such.
        idx = index(srv)
        assert {(r["name"], r.get("version"), r["state"], r.get("reason")) for r in idx} == {
            ("mlp", "1", "READY", None), ("mlp", "2", "READY", None),
            ("iris", None, "UNAVAILABLE", "not loaded")}, idx
        assert get(srv, "/v2/models/iris/ready").status_code != 200
        assert post(srv, "/v2/models/iris/infer", json_infer_body("input", np.zeros((1, 4), np.float32))
                    ).status_code == 404

        with grpcclient.InferenceServerClient(srv.grpc_addr) as gc:
            gc.load_model("iris")
            assert gc.is_model_ready("iris")
            r = post(srv, "/v2/models/iris/infer", json_infer_body("input", np.ones((2, 4), np.float32)))
            assert r.status_code == 200, r.text

            # A config override keeping only version 1: version 2 goes, unversioned go to 1.
            gc.load_model("mlp", config=json.dumps(lm.mlp_config_json(versions=[1])))
            assert gc.is_model_ready("mlp", "1") and not gc.is_model_ready("mlp", "2")
            assert {k for k, r in rows(srv, "mlp").items() if r["state"] == "READY"} == {"1"}
            # The version the reload dropped stays listed, as unloaded (Triton's index).
            assert rows(srv, "mlp")["2"]["state"] == "UNAVAILABLE" and rows(srv, "mlp")["2"]["reason"] == "unloaded"
            assert infer(srv, "mlp", mlp_batch(1)).json()["model_version"] == "1"
            assert gc.get_model_config("mlp").config.version_policy.specific.versions == [1]

            gc.unload_model("iris")
            assert not gc.is_model_ready("iris")
            iris = rows(srv, "iris")
            assert iris and all(r["state"] == "UNAVAILABLE" and r.get("reason") == "unloaded"
                                for r in iris.values()), iris

            # A load of an unknown model fails with a reason.
            with pytest.raises(InferenceServerException) as e:
                gc.load_model("no_such_model")
            assert "no_such_model" in str(e.value)

        # tritonclient.http: a plain load goes back to config.pbtxt (both versions).
        hc = httpclient.InferenceServerClient(srv.http_addr)
        hc.load_model("mlp")
        assert hc.is_model_ready("mlp", "2")
        assert infer(srv, "mlp", mlp_batch(1)).json()["model_version"] == "2"
        hc.unload_model("mlp")
        assert not hc.is_model_ready("mlp")
        hc.close()
        assert {r["state"] for r in rows(srv, "mlp").values()} == {"UNAVAILABLE"}
        assert infer(srv, "mlp", mlp_batch(1)).status_code != 200
        assert index(srv, ready=True) == []


def test_poll_mode_picks_up_new_versions_and_removed_models(tmp_path):
    repo = lm.mlp_repo(tmp_path / "models", versions=(1, 2), models=("mlp", "iris"))
    with serving(repo, tmp_path / "quiver.log", "--model-control-mode", "poll",
                 "--repository-poll-secs", "1") as srv:
        assert {r["name"] for r in index(srv, ready=True)} == {"mlp", "iris"}
        assert infer(srv, "mlp", mlp_batch(1)).json()["model_version"] == "2"
        r = post(srv, "/v2/repository/models/mlp/load")  # the API is explicit mode's
        assert r.status_code == 400, r.text

        lm.add_mlp_version(repo, 3, source=1)
        shutil.rmtree(repo / "iris")
        poll_until(lambda: rows(srv, "mlp").get("3", {}).get("state") == "READY", 6, "mlp v3 READY")
        poll_until(lambda: all(r["state"] == "UNAVAILABLE" and r.get("reason") == "unloaded"
                               for r in rows(srv, "iris").values()), 6, "iris unloaded")
        r = infer(srv, "mlp", mlp_batch(1, seed=3))
        assert r.status_code == 200 and r.json()["model_version"] == "3", r.text
        np.testing.assert_allclose(
            outputs_of(r, "probabilities"),
            Reference(repo).run("mlp", {"input": mlp_batch(1, seed=3)}, 3)["probabilities"],
            rtol=1e-4, atol=1e-5)
        assert get(srv, "/v2/models/iris/ready").status_code != 200
        assert {k: r["state"] for k, r in rows(srv, "mlp").items()} == {
            "1": "READY", "2": "READY", "3": "READY"}

        # A changed version is reloaded: version 3 now holds version 2's weights.
        x = mlp_batch(1, seed=4)
        want = Reference(lm.DEPLOY_MODELS).run("mlp", {"input": x}, 2)["probabilities"]
        shutil.copy(lm.DEPLOY_MODELS / "mlp" / "2" / "model.onnx", repo / "mlp" / "3" / "model.onnx")
        poll_until(lambda: np.allclose(outputs_of(infer(srv, "mlp", x), "probabilities"), want,
                                       rtol=1e-4, atol=1e-5), 6, "mlp v3 reloaded with new weights")
        assert infer(srv, "mlp", x).json()["model_version"] == "3"
        # Unchanged versions were kept as they were: loaded once each, at startup.
        assert _loads(srv, "mlp") == {"1": 1, "2": 1, "3": 2}, srv.log_tail()


def _loads(srv, model: str) -> Counter:
    """How many times each version of `model` was loaded, from the server log."""
    return Counter(re.findall(rf"loaded and warmed up in .* model={model} version=(\d+)", srv.log()))


# --------------------------------------------------------------------------------------------
# 6. Warmup
# --------------------------------------------------------------------------------------------


def test_warmup_runs_before_ready_and_a_failing_warmup_fails_the_load(tmp_path):
    repo = lm.mlp_repo(tmp_path / "models", versions=(1,), extra_config=lm.MLP_WARMUP % 16)
    # flaky: the warmup sample (3 zeros) runs fine on version 1 and fails on version 2 at
    # execution: the warmup really runs the model, it does not only check shapes.
    lm.flaky_repo(repo, 'model_warmup [ { name: "short" batch_size: 1 inputs { key: "x" value: '
                        '{ data_type: TYPE_FP32 dims: [ 3 ] zero_data: true } } } ]\n')
    with serving(repo, tmp_path / "quiver.log", "--model-control-mode", "explicit",
                 "--load-model", "mlp") as srv:
        assert {k: r["state"] for k, r in rows(srv, "mlp").items()} == {"1": "READY"}
        assert infer(srv, "mlp", mlp_batch(2)).status_code == 200

        r = load(srv, "flaky")
        assert r.status_code == 400, r.text
        msg = error_message(r)
        assert "warmup" in msg and "version 2" in msg, msg
        flaky = rows(srv, "flaky")
        assert flaky["1"]["state"] == "READY", flaky
        assert flaky["2"]["state"] == "UNAVAILABLE" and "warmup" in flaky["2"]["reason"], flaky
        assert get(srv, "/v2/models/flaky/versions/2/ready").status_code == 400

        # A warmup that cannot run at all (wrong dims) on a new mlp version 2: that version never
        # becomes READY, while version 1 keeps serving.
        lm.add_mlp_version(repo, 2)
        (repo / "mlp" / "config.pbtxt").write_text(lm.MLP_CONFIG + lm.MLP_WARMUP % 15)
        seen = []
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                seen.append((get(srv, "/v2/models/mlp/versions/2/ready").status_code,
                             infer(srv, "mlp", mlp_batch(1)).status_code))

        w = threading.Thread(target=watch)
        w.start()
        try:
            r = load(srv, "mlp")
            t = time.monotonic()
            poll_until(lambda: time.monotonic() - t > 0.3 and len(seen) > 5, 10, "watch samples")
        finally:
            stop.set()
            w.join(10)
        assert r.status_code == 400, r.text
        msg = error_message(r)
        assert "warmup" in msg and "version 2" in msg, msg
        assert 200 not in {s for s, _ in seen}, Counter(seen)
        assert {s for _, s in seen} == {200}, Counter(seen)
        mlp = rows(srv, "mlp")
        assert mlp["1"]["state"] == "READY" and mlp["2"]["state"] == "UNAVAILABLE", mlp
        assert "warmup" in mlp["2"]["reason"], mlp
        r = infer(srv, "mlp", mlp_batch(1))
        assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
