"""The control plane on one machine: `quiver up`, and InferenceService manifests applied with
`quiver apply` as users write them for KServe — infer through them, canary a new revision and
count the split from responses, roll back, promote, scale to zero and back under a burst, kill -9
and restart, refuse bad manifests with the field named, delete."""

from __future__ import annotations

import functools
import json
import os
import signal
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests

from conftest import DEPLOY_MODELS, QUIVER_BIN, QuiverServer

MLP_V1 = DEPLOY_MODELS / "mlp" / "1" / "model.onnx"
MLP_V2 = DEPLOY_MODELS / "mlp" / "2" / "model.onnx"
X = np.random.default_rng(7).standard_normal((1, 16)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def expected(model: Path) -> np.ndarray:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X})[0]


class UpServer(QuiverServer):
    """One `quiver up` process: runtime and control plane, state under `home`."""

    def __init__(self, home: Path, log_path: Path, http_port: int = 0, grpc_port: int = 0, extra_args=None):
        super().__init__(home, log_path, extra_args)
        self.home = home
        self.http_port, self.grpc_port = http_port, grpc_port

    def command(self) -> list[str]:
        return [
            str(QUIVER_BIN), "up", "--home", str(self.home),
            "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
            "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
            # Knative's cluster-wide scale-to-zero grace, shortened for the test.
            "--autoscaler-set", "scale-to-zero-grace-period=1s",
            *self.extra_args,
        ]

    def restart(self, kill_signal=signal.SIGKILL) -> None:
        host_http, host_grpc = self.http_addr, self.grpc_addr
        self.proc.send_signal(kill_signal)
        self.proc.wait(10)
        self._log_file.close()
        self.http_port = int(host_http.rsplit(":", 1)[1])
        self.grpc_port = int(host_grpc.rsplit(":", 1)[1])
        self.log_path = self.log_path.with_name(self.log_path.stem + "-restarted.log")
        self.start()


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    home = tmp_path_factory.mktemp("quiver-home")
    srv = UpServer(home, tmp_path_factory.mktemp("log") / "up.log")
    srv.start()
    yield srv
    alive = srv.proc.poll() is None
    rc = srv.terminate(signal.SIGTERM, timeout=15)
    print(f"\n--- quiver up log tail ---\n{srv.log_tail(40)}")
    assert alive, f"quiver up died during the run:\n{srv.log_tail()}"
    assert rc == 0, f"quiver up did not exit 0 on SIGTERM (rc={rc}):\n{srv.log_tail()}"


def cli(up: UpServer, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE",)}
    env["QUIVER_HOME"] = str(up.home)
    run = subprocess.run([str(QUIVER_BIN), *args], input=stdin, capture_output=True, text=True, timeout=60, env=env)
    for sign in ("panicked", "stack backtrace"):
        assert sign not in run.stderr, run.stderr
    if check:
        assert run.returncode == 0, f"quiver {' '.join(args)} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    return run


def manifest(name: str, uri: Path | str, canary: int | None = None, extra_predictor: str = "", annotations: str = "") -> str:
    canary_line = f"    canaryTrafficPercent: {canary}\n" if canary is not None else ""
    uri = uri.as_uri() if isinstance(uri, Path) else uri
    return (
        "apiVersion: serving.kserve.io/v1beta1\n"
        "kind: InferenceService\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"{annotations}"
        "spec:\n"
        "  predictor:\n"
        f"{canary_line}{extra_predictor}"
        "    model:\n"
        "      modelFormat:\n"
        "        name: onnx\n"
        "      protocolVersion: v2\n"
        f"      storageUri: {uri}\n"
    )


def get(up: UpServer, name: str) -> dict:
    return json.loads(cli(up, "get", "isvc", name, "-o", "json").stdout)


def condition(obj: dict, kind: str) -> str | None:
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == kind:
            return c.get("status")
    return None


def wait_for(up: UpServer, name: str, check, what: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    obj = None
    while time.monotonic() < deadline:
        obj = get(up, name)
        if check(obj):
            return obj
        time.sleep(0.1)
    raise AssertionError(f"{name}: {what} not reached in {timeout}s:\n{json.dumps(obj, indent=1)[:3000]}\n{up.log_tail()}")


def infer(up: UpServer, name: str) -> np.ndarray:
    body = {"inputs": [{"name": "input", "shape": list(X.shape), "datatype": "FP32", "data": X.flatten().tolist()}]}
    r = requests.post(f"{up.http_url}/v2/models/{name}/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def which(out: np.ndarray) -> int:
    """Which mlp version answered."""
    v1, v2 = expected(MLP_V1), expected(MLP_V2)
    assert not np.allclose(v1, v2), "the two mlp versions must differ"
    if np.allclose(out, v1, rtol=1e-4, atol=1e-5):
        return 1
    if np.allclose(out, v2, rtol=1e-4, atol=1e-5):
        return 2
    raise AssertionError(f"output matches neither version: {out}")


def traffic(obj: dict) -> list[tuple[str, int]]:
    return sorted((t["revisionName"], t["percent"]) for t in obj["status"]["components"]["predictor"].get("traffic", []))


def test_the_token_guards_the_api_and_not_inference(up, tmp_path):
    token = up.home / "token"
    assert token.exists(), "quiver up writes $QUIVER_HOME/token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    url = f"{up.http_url}/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"
    r = requests.get(url, timeout=10)
    assert r.status_code == 401 and "error" in r.json()
    r = requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 401
    r = requests.get(url, headers={"Authorization": f"Bearer {token.read_text().strip()}"}, timeout=10)
    assert r.status_code == 200 and r.json()["kind"] == "InferenceServiceList"
    assert requests.get(f"{up.http_url}/v2/health/live", timeout=10).status_code == 200


def test_apply_infer_canary_rollback_promote_delete(up, tmp_path):
    name = "mlp-cp"
    m = tmp_path / "isvc.yaml"
    m.write_text(manifest(name, MLP_V1))
    run = cli(up, "apply", "-f", str(m))
    assert f"inferenceservice.serving.kserve.io/{name} created" in run.stdout
    obj = wait_for(up, name, lambda o: condition(o, "Ready") == "True", "Ready")
    p = obj["status"]["components"]["predictor"]
    assert p["latestReadyRevision"] == f"{name}-predictor-00001"
    assert traffic(obj) == [(f"{name}-predictor-00001", 100)]
    assert f"/v2/models/{name}" in obj["status"]["url"]
    assert which(infer(up, name)) == 1
    # The same model over gRPC, on the server's gRPC port.
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url=up.grpc_addr) as client:
        inp = grpcclient.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        assert which(client.infer(name, [inp]).as_numpy("probabilities")) == 1
    # The same manifest again changes nothing.
    assert "unchanged" in cli(up, "apply", "-f", str(m)).stdout
    table = cli(up, "get", "isvc").stdout
    header = table.splitlines()[0].split()
    assert header[:3] == ["NAME", "URL", "READY"], table
    assert name in table and "True" in table

    # A new storageUri with canaryTrafficPercent 30: revision 2 takes 30% once ready.
    m.write_text(manifest(name, MLP_V2, canary=30))
    assert "configured" in cli(up, "apply", "-f", str(m)).stdout
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    obj = wait_for(up, name, lambda o: traffic(o) == [(r1, 70), (r2, 30)], "a 70/30 split")
    assert obj["status"]["components"]["predictor"]["latestRolledoutRevision"] == r1
    answers = [which(infer(up, name)) for _ in range(200)]
    assert 45 <= answers.count(2) <= 75, f"{answers.count(2)} of 200 on the canary"

    # canaryTrafficPercent 0 pins the previous revision: a rollback.
    m.write_text(manifest(name, MLP_V2, canary=0))
    cli(up, "apply", "-f", str(m))
    wait_for(up, name, lambda o: traffic(o) == [(r1, 100), (r2, 0)], "the rollback")
    assert {which(infer(up, name)) for _ in range(20)} == {1}

    # Without the percent the latest revision is promoted.
    m.write_text(manifest(name, MLP_V2))
    cli(up, "apply", "-f", str(m))
    obj = wait_for(up, name, lambda o: traffic(o) == [(r2, 100)], "the promotion")
    p = obj["status"]["components"]["predictor"]
    assert (p["latestRolledoutRevision"], p["previousRolledoutRevision"]) == (r2, r1)
    assert {which(infer(up, name)) for _ in range(20)} == {2}

    described = cli(up, "describe", "isvc", name).stdout
    for word in ("Conditions", "Ready", "Events", "RevisionCreated"):
        assert word in described, described

    run = cli(up, "delete", "isvc", name)
    assert f'"{name}" deleted' in run.stdout
    deadline = time.monotonic() + 30
    while requests.get(f"{up.http_url}/v2/models/{name}", timeout=10).status_code != 404:
        assert time.monotonic() < deadline, "the model is still served after delete"
        time.sleep(0.1)
    assert cli(up, "get", "isvc", name, check=False).returncode != 0


def test_a_failed_revision_never_takes_traffic(up, tmp_path):
    name = "mlp-broken"
    m = tmp_path / "isvc.yaml"
    m.write_text(manifest(name, MLP_V1))
    cli(up, "apply", "-f", str(m))
    wait_for(up, name, lambda o: condition(o, "Ready") == "True", "Ready")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(MLP_V1.read_bytes()[:200])
    m.write_text(manifest(name, corrupt))
    cli(up, "apply", "-f", str(m))
    obj = wait_for(up, name, lambda o: condition(o, "LatestDeploymentReady") == "False", "the failed revision")
    assert condition(obj, "Ready") == "True", "the previous revision keeps serving"
    assert obj["status"]["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert obj["status"]["modelStatus"]["lastFailureInfo"]["message"]
    assert traffic(obj) == [(f"{name}-predictor-00001", 100)]
    assert {which(infer(up, name)) for _ in range(10)} == {1}
    cli(up, "delete", "isvc", name)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"canary": 150}, "canaryTrafficPercent"),
        ({"extra": "    minReplicas: 3\n    maxReplicas: 1\n"}, "minReplicas"),
        ({"uri": "/nonexistent/model.onnx"}, "storageUri"),
        ({"uri": "gs://kfserving-examples/models/sklearn/1.0/model"}, "storageUri"),
    ],
)
def test_bad_manifests_are_refused_naming_the_field(up, tmp_path, change, field):
    m = tmp_path / "bad.yaml"
    m.write_text(manifest("bad-one", change.get("uri", MLP_V1), canary=change.get("canary"), extra_predictor=change.get("extra", "")))
    run = cli(up, "apply", "-f", str(m), check=False)
    assert run.returncode != 0
    assert field in run.stderr + run.stdout, run.stderr
    assert cli(up, "get", "isvc", "bad-one", check=False).returncode != 0, "nothing was stored"


def test_an_unsupported_format_names_the_converter_or_the_field(up, tmp_path):
    m = tmp_path / "tf.yaml"
    m.write_text(manifest("tf-one", MLP_V1).replace("name: onnx", "name: tensorflow"))
    run = cli(up, "apply", "-f", str(m), check=False)
    assert run.returncode != 0 and "modelFormat" in run.stderr + run.stdout, run.stderr


def test_an_unknown_field_is_a_warning_and_kept(up, tmp_path):
    m = tmp_path / "unknown.yaml"
    m.write_text(manifest("mlp-unknown", MLP_V1, extra_predictor="    fancyNewField: 3\n"))
    run = cli(up, "apply", "-f", str(m))
    assert "fancyNewField" in run.stderr, run.stderr
    obj = get(up, "mlp-unknown")
    assert obj["spec"]["predictor"]["fancyNewField"] == 3, "kept, not dropped"
    cli(up, "delete", "isvc", "mlp-unknown")


def test_scale_to_zero_and_back_under_a_burst(up, tmp_path):
    name = "mlp-zero"
    m = tmp_path / "zero.yaml"
    annotations = '  annotations:\n    autoscaling.knative.dev/window: "6s"\n'
    m.write_text(manifest(name, MLP_V1, extra_predictor="    minReplicas: 0\n    maxReplicas: 2\n", annotations=annotations))
    cli(up, "apply", "-f", str(m))
    wait_for(up, name, lambda o: condition(o, "Ready") == "True", "Ready")
    assert which(infer(up, name)) == 1
    replicas = lambda o: o["status"]["components"]["predictor"].get("replicas", {})  # noqa: E731
    wait_for(up, name, lambda o: replicas(o).get("desired") == 0 and replicas(o).get("ready") == 0, "zero replicas", timeout=90)
    wide = cli(up, "get", "isvc", name, "-o", "wide").stdout
    assert "DESIRED" in wide.splitlines()[0], wide
    with ThreadPoolExecutor(16) as pool:
        outs = list(pool.map(lambda _: infer(up, name), range(64)))
    assert {which(o) for o in outs} == {1}, "every request of the burst served"
    wait_for(up, name, lambda o: replicas(o).get("ready", 0) >= 1, "replicas back up")
    cli(up, "delete", "isvc", name)


def test_kill_9_and_restart_brings_everything_back(up, tmp_path):
    name = "mlp-durable"
    m = tmp_path / "durable.yaml"
    m.write_text(manifest(name, MLP_V1))
    cli(up, "apply", "-f", str(m))
    wait_for(up, name, lambda o: condition(o, "Ready") == "True", "Ready")
    m.write_text(manifest(name, MLP_V2, canary=50))
    cli(up, "apply", "-f", str(m))
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    wait_for(up, name, lambda o: traffic(o) == [(r1, 50), (r2, 50)], "a 50/50 split")
    up.restart(signal.SIGKILL)
    obj = wait_for(up, name, lambda o: condition(o, "Ready") == "True" and traffic(o) == [(r1, 50), (r2, 50)], "back after kill -9")
    assert obj["metadata"]["name"] == name
    answers = [which(infer(up, name)) for _ in range(100)]
    assert answers.count(2) == 50, f"the split survived the restart: {answers.count(2)} of 100"
    cli(up, "delete", "isvc", name)
