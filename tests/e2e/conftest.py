"""Fixtures of Quiver's end-to-end suite: a model repository, a running `quiver serve`, clients, and
onnxruntime references.

Environment:
  QUIVER_BIN   path of the server binary (default: <repo root>/target/release/quiver)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEPLOY_MODELS = REPO_ROOT / "deploy" / "models"
sys.path.insert(0, str(HERE))

import extra_models  # noqa: E402

QUIVER_BIN = Path(os.environ.get("QUIVER_BIN", REPO_ROOT / "target" / "release" / "quiver"))

LISTEN_RE = re.compile(r"(HTTP|gRPC) server listening on (\S+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

RTOL = 1e-4
ATOL = 1e-5


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


class QuiverServer:
    """One `quiver serve` process on 127.0.0.1 with ports chosen by the OS."""

    def __init__(self, repo: Path, log_path: Path, extra_args: list[str] | None = None):
        self.repo = Path(repo)
        self.log_path = Path(log_path)
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.http_addr: str | None = None
        self.grpc_addr: str | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.http_addr}"

    def command(self) -> list[str]:
        return [
            str(QUIVER_BIN), "serve",
            "--model-repository", str(self.repo),
            "--http-address", "127.0.0.1", "--http-port", "0",
            "--grpc-address", "127.0.0.1", "--grpc-port", "0",
            *self.extra_args,
        ]

    def log(self) -> str:
        try:
            return ANSI_RE.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def spawn(self) -> None:
        if not QUIVER_BIN.exists():
            pytest.fail(
                f"server binary {QUIVER_BIN} does not exist: build it (cargo build --release) "
                "or set QUIVER_BIN"
            )
        env = dict(os.environ)
        env.setdefault("QUIVER_LOG", "info")  # the server's log filter (src/main.rs)
        env["NO_COLOR"] = "1"
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, env=env,
        )

    def wait_listening(self, timeout: float = 60.0) -> None:
        """Waits for both 'listening on' log lines; raises if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = dict((m.group(1), m.group(2)) for m in LISTEN_RE.finditer(self.log()))
            if "HTTP" in found and "gRPC" in found:
                self.http_addr, self.grpc_addr = found["HTTP"], found["gRPC"]
                for addr in (self.http_addr, self.grpc_addr):
                    assert addr.startswith("127.0.0.1:"), f"not bound to 127.0.0.1: {addr!r}"
                    assert int(addr.rsplit(":", 1)[1]) > 0, f"port 0 was not resolved: {addr!r}"
                assert self.http_addr != self.grpc_addr
                for addr in (self.http_addr, self.grpc_addr):
                    self._wait_port(addr, deadline)
                return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"quiver exited with {self.proc.returncode} before listening:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        raise RuntimeError(f"quiver did not log both listening lines in {timeout}s:\n{self.log_tail()}")

    def _wait_port(self, addr: str, deadline: float) -> None:
        host, port = addr.rsplit(":", 1)
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError as e:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"nothing accepts connections on {addr}: {e}\n{self.log_tail()}")
                time.sleep(0.05)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"quiver exited with {self.proc.returncode} before ready:\n{self.log_tail()}"
                )
            try:
                r = requests.get(f"{self.http_url}/v2/health/ready", timeout=2)
                last = r.status_code
                if r.status_code == 200:
                    return
                # Fail fast when every model has settled and some could not be loaded.
                idx = requests.post(f"{self.http_url}/v2/repository/index", json={}, timeout=2)
                # (Models an explicit mode has not loaded are UNAVAILABLE "not loaded": not a
                # failure. Readiness is asked again: the index can settle a moment before it.)
                if idx.status_code == 200 and isinstance(idx.json(), list) and idx.json():
                    states = {m.get("state") for m in idx.json()}
                    failed = [m for m in idx.json() if m.get("state") == "UNAVAILABLE" and m.get("reason") != "not loaded"]
                    if states <= {"READY", "UNAVAILABLE"} and failed:
                        if requests.get(f"{self.http_url}/v2/health/ready", timeout=2).status_code == 200:
                            return
                        break
            except (requests.RequestException, ValueError) as e:
                last = repr(e)
            time.sleep(0.1)
        try:  # which models are not READY, if the server says so
            index = requests.post(f"{self.http_url}/v2/repository/index", json={}, timeout=2).text[:2000]
        except requests.RequestException:
            index = "?"
        raise RuntimeError(
            f"/v2/health/ready did not answer 200 (last: {last})\n"
            f"repository index: {index}\n{self.log_tail()}"
        )

    def start(self, timeout: float = 60.0) -> "QuiverServer":
        self.spawn()
        try:
            self.wait_listening(timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Sends `sig` and waits up to `timeout` s; returns the exit code, or None if it hung
        (then the process is killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            self._log_file.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def copy_deploy_models(dest: Path, only: list[str] | None = None) -> Path:
    """Copies the committed example models (every directory of deploy/models) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    models = [p for p in sorted(DEPLOY_MODELS.iterdir()) if p.is_dir() and not p.name.startswith(("_", "."))]
    if not any((p / "1" / "model.onnx").exists() for p in models):
        pytest.fail(f"{DEPLOY_MODELS} holds no models: run deploy/models/generate.py")
    for p in models:
        if only is None or p.name in only:
            shutil.copytree(p, dest / p.name)
    return dest


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory) -> Path:
    """deploy/models plus the drop-in models of extra_models.py, generated before the server starts."""
    repo = copy_deploy_models(tmp_path_factory.mktemp("quiver") / "models")
    extra_models.generate(repo)
    return repo


@pytest.fixture(scope="session")
def server(model_repo, tmp_path_factory):
    srv = QuiverServer(model_repo, tmp_path_factory.mktemp("log") / "quiver.log")
    srv.start()
    yield srv
    alive = srv.proc.poll() is None
    rc = srv.terminate(signal.SIGTERM, timeout=10)
    print(f"\n--- quiver log tail ---\n{srv.log_tail(30)}")
    assert alive, f"the shared server died during the run (exit {srv.proc.returncode}):\n{srv.log_tail()}"
    assert rc == 0, f"quiver did not exit 0 within 10 s of SIGTERM (rc={rc}):\n{srv.log_tail()}"


@pytest.fixture(scope="session")
def http_url(server) -> str:
    return server.http_url


@pytest.fixture(scope="session")
def grpc_addr(server) -> str:
    return server.grpc_addr


@pytest.fixture(scope="session")
def http_client(server):
    import tritonclient.http as httpclient

    c = httpclient.InferenceServerClient(url=server.http_addr, network_timeout=30.0)
    yield c
    c.close()


@pytest.fixture(scope="session")
def grpc_client(server):
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(url=server.grpc_addr)
    yield c
    c.close()


@pytest.fixture(scope="session")
def grpc_stub(server):
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc_addr)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


# --------------------------------------------------------------------------------------------
# onnxruntime references
# --------------------------------------------------------------------------------------------


class Reference:
    """Runs a model file of the test repository with onnxruntime."""

    def __init__(self, repo: Path):
        self.repo = repo
        self._sessions = {}

    def session(self, model: str, version: int | str = 1):
        import onnxruntime as ort

        key = (model, str(version))
        if key not in self._sessions:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.intra_op_num_threads = 1
            self._sessions[key] = ort.InferenceSession(
                str(self.repo / model / str(version) / "model.onnx"), opts,
                providers=["CPUExecutionProvider"],
            )
        return self._sessions[key]

    def run(self, model: str, inputs: dict[str, np.ndarray], version: int | str = 1) -> dict:
        s = self.session(model, version)
        feeds = {}
        for k, v in inputs.items():
            if v.dtype == np.object_:  # onnxruntime wants str for string tensors
                v = np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b, otypes=[object])(v)
            feeds[k] = v
        names = [o.name for o in s.get_outputs()]
        return dict(zip(names, s.run(names, feeds)))

    def output_names(self, model: str, version: int | str = 1) -> list[str]:
        return [o.name for o in self.session(model, version).get_outputs()]


@pytest.fixture(scope="session")
def reference(model_repo) -> Reference:
    return Reference(model_repo)


@pytest.fixture(scope="session")
def reference_for_repo():
    """Reference runners for repositories other than the shared one (per-test servers)."""
    cache: dict[Path, Reference] = {}

    def make(repo: Path) -> Reference:
        return cache.setdefault(Path(repo), Reference(Path(repo)))

    return make


def assert_same(actual, expected, name: str = "") -> None:
    """Quiver's output vs onnxruntime's: exact for integers/strings, close for floats. The shape
    must match exactly."""
    assert actual is not None, f"output {name!r} missing from the response"
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    if expected.dtype.kind == "f":
        assert actual.dtype.kind == "f", f"{name}: dtype {actual.dtype}, expected {expected.dtype}"
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=name)
    else:
        assert actual.dtype.kind == expected.dtype.kind or expected.dtype == np.object_, (
            f"{name}: dtype {actual.dtype}, expected {expected.dtype}"
        )
        np.testing.assert_array_equal(actual, expected, err_msg=name)


# --------------------------------------------------------------------------------------------
# Small helpers shared by the test modules
# --------------------------------------------------------------------------------------------


def require_model(name: str) -> None:
    if name in extra_models.excluded():
        pytest.skip(f"{name} excluded by QUIVER_E2E_EXCLUDE")


def mlp_batch(rows: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 16)).astype(np.float32)


def json_infer_body(name: str, x: np.ndarray, datatype: str = "FP32", **extra) -> dict:
    body = {"inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype,
                        "data": x.flatten().tolist()}]}
    body.update(extra)
    return body


def error_message(resp: requests.Response) -> str:
    """Asserts the body is JSON {"error": "<non-empty message>"} and returns the message."""
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(
            f"HTTP {resp.status_code} error body is not JSON: {resp.content[:300]!r}"
        ) from None
    assert isinstance(body, dict) and "error" in body, f"error body lacks 'error': {body!r}"
    assert isinstance(body["error"], str) and body["error"].strip(), f"empty error message: {body!r}"
    return body["error"]


def check_good_inference(http_url: str, reference: Reference, version: int | None = None) -> None:
    """One well-formed JSON inference on mlp, checked against onnxruntime: proves the server still
    works after an abusive request."""
    x = mlp_batch(2, seed=99)
    path = f"/v2/models/mlp/versions/{version}/infer" if version else "/v2/models/mlp/infer"
    r = requests.post(http_url + path, json=json_infer_body("input", x), timeout=10)
    assert r.status_code == 200, f"good inference after a bad one failed: {r.status_code} {r.text[:300]}"
    out = {o["name"]: o for o in r.json()["outputs"]}["probabilities"]
    got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    assert_same(got, reference.run("mlp", {"input": x}, version or 2)["probabilities"], "probabilities")


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    """Parses the Prometheus text format into (name, labels, value) samples."""
    samples = []
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            continue
        labels = dict(label_re.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric_sum(samples, name: str, **labels) -> float | None:
    """Sum of the samples of `name` whose labels include `labels`; None if there is none."""
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    return sum(vals) if vals else None


def dumps_compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
