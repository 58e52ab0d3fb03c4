"""The control plane's costs, measured on this machine (benches/RESULTS.md, "Control plane").

    target/pyenv/bin/python benches/control-plane/run.py [--quiver target/release/quiver] [--rounds 5]

- apply -> Ready: `quiver apply -f` of an InferenceService on a local ONNX model (the shipped
  mlp), until its Ready condition is True, polled on the management API every 5 ms;
- canary: a new storageUri with canaryTrafficPercent 30, until the split is in the status and a
  request lands on the new revision; then a percent change alone (30 -> 80), until live;
- get: `quiver get isvc` as a process (what a user waits for) and the API GET it makes;
- idle RSS of `quiver up` (no services) against `quiver serve` (empty repository), and with the
  same one model (applied vs in the repository);
- the inference path: the same `quiver bench` load (concurrency 8, JSON) on the model served by
  `quiver serve` and through `quiver up`, alternating, medians.
Prints a JSON summary; the figures of record are in benches/RESULTS.md."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "deploy" / "models" / "mlp"
X = np.random.default_rng(1).standard_normal((1, 16)).astype(np.float32)


def manifest(name: str, uri: Path, canary: int | None = None) -> str:
    c = f"    canaryTrafficPercent: {canary}\n" if canary is not None else ""
    return (f"apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: {name}\nspec:\n"
            f"  predictor:\n{c}    model:\n      modelFormat:\n        name: onnx\n      protocolVersion: v2\n"
            f"      storageUri: {uri.as_uri()}\n")


def free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Proc:
    def __init__(self, args: list[str], url: str, log: Path, env=None):
        self.url = url
        self.log = open(log, "wb")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"not ready: {args}")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(20)
        self.log.close()


def infer_body() -> dict:
    return {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": X.flatten().tolist()}]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quiver", default=str(ROOT / "target" / "release" / "quiver"))
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    quiver = args.quiver
    work = Path(tempfile.mkdtemp(prefix="quiver-cp-bench-"))
    out: dict = {}
    try:
        home = work / "home"
        env = dict(os.environ, QUIVER_HOME=str(home), QUIVER_LOG="warn")
        hp, gp = free_port(), free_port()
        up = Proc([quiver, "up", "--home", str(home), "--http-port", str(hp), "--grpc-port", str(gp)],
                  f"http://127.0.0.1:{hp}", work / "up.log", env)
        token = (home / "token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        api = f"{up.url}/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"
        time.sleep(3)
        out["idle_rss_mb_up_no_services"] = rss_mb(up.p.pid)

        def status(name):
            r = requests.get(f"{api}/{name}", headers=auth, timeout=10)
            return r.json().get("status", {}) if r.status_code == 200 else {}

        def ready(name):
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status(name).get("conditions", []))

        def apply(text: str):
            f = work / "m.yaml"
            f.write_text(text)
            subprocess.run([quiver, "apply", "-f", str(f)], check=True, capture_output=True, env=env)

        def wait(pred, timeout=60.0):
            deadline = time.monotonic() + timeout
            while not pred():
                if time.monotonic() > deadline:
                    raise RuntimeError("timed out")
                time.sleep(0.005)

        apply_ready = []
        for i in range(args.rounds):
            name = f"mlp-r{i}"
            t0 = time.perf_counter()
            apply(manifest(name, MLP / "1" / "model.onnx"))
            wait(lambda: ready(name))
            apply_ready.append(time.perf_counter() - t0)
            subprocess.run([quiver, "delete", "isvc", name], check=True, capture_output=True, env=env)
        out["apply_to_ready_s"] = {"median": statistics.median(apply_ready), "all": apply_ready}

        name = "mlp-canary"
        apply(manifest(name, MLP / "1" / "model.onnx"))
        wait(lambda: ready(name))
        v2 = None

        def served_by_v2() -> bool:
            r = requests.post(f"{up.url}/v2/models/{name}/infer", json=infer_body(), timeout=10)
            return r.ok and np.allclose(np.array(r.json()["outputs"][0]["data"]), v2, atol=1e-5)

        import onnxruntime as ort
        sess = ort.InferenceSession(str(MLP / "2" / "model.onnx"), providers=["CPUExecutionProvider"])
        v2 = sess.run(None, {"input": X})[0].flatten()
        t0 = time.perf_counter()
        apply(manifest(name, MLP / "2" / "model.onnx", canary=30))
        wait(lambda: len(status(name).get("components", {}).get("predictor", {}).get("traffic", [])) == 2)
        wait(lambda: any(served_by_v2() for _ in range(10)))
        out["new_revision_canary_live_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        apply(manifest(name, MLP / "2" / "model.onnx", canary=80))
        wait(lambda: any(t.get("percent") == 80 for t in status(name)["components"]["predictor"]["traffic"]))
        out["percent_change_live_s"] = time.perf_counter() - t0
        hits = sum(served_by_v2() for _ in range(100))
        out["percent_change_observed_canary_share"] = hits / 100

        cli = []
        for _ in range(20):
            t0 = time.perf_counter()
            subprocess.run([quiver, "get", "isvc"], check=True, capture_output=True, env=env)
            cli.append(time.perf_counter() - t0)
        api_get = []
        s = requests.Session()
        for _ in range(200):
            t0 = time.perf_counter()
            s.get(api, headers=auth, timeout=10).raise_for_status()
            api_get.append(time.perf_counter() - t0)
        out["get_cli_ms_median"] = 1000 * statistics.median(cli)
        out["get_api_ms_median"] = 1000 * statistics.median(api_get)

        # The same model for the inference path and RSS: applied (up) vs in a repository (serve).
        subprocess.run([quiver, "delete", "isvc", name], check=True, capture_output=True, env=env)
        apply(manifest("mlp", MLP / "1" / "model.onnx"))
        wait(lambda: ready("mlp"))
        time.sleep(3)
        out["idle_rss_mb_up_one_model"] = rss_mb(up.p.pid)
        up_proc = up

        empty = work / "empty"
        empty.mkdir()
        sp = free_port()
        serve = Proc([quiver, "serve", "--model-repository", str(empty), "--http-address", "127.0.0.1", "--http-port", str(sp),
                      "--grpc-address", "127.0.0.1", "--grpc-port", str(free_port())], f"http://127.0.0.1:{sp}", work / "serve0.log", env)
        time.sleep(3)
        out["idle_rss_mb_serve_empty"] = rss_mb(serve.p.pid)
        serve.stop()
        repo = work / "repo"
        (repo / "mlp" / "1").mkdir(parents=True)
        shutil.copy(MLP / "1" / "model.onnx", repo / "mlp" / "1" / "model.onnx")
        sp = free_port()
        serve = Proc([quiver, "serve", "--model-repository", str(repo), "--http-address", "127.0.0.1", "--http-port", str(sp),
                      "--grpc-address", "127.0.0.1", "--grpc-port", str(free_port())], f"http://127.0.0.1:{sp}", work / "serve.log", env)
        time.sleep(3)
        out["idle_rss_mb_serve_one_model"] = rss_mb(serve.p.pid)

        runs: dict[str, list] = {"serve": [], "up": []}
        data = work / "input.json"
        data.write_text(json.dumps({"data": [{"input": X.flatten().tolist()}]}))
        for _ in range(3):
            for label, url in (("serve", serve.url), ("up", up_proc.url)):
                r = subprocess.run([quiver, "bench", "-m", "mlp", "-u", url, "--concurrency", "8", "-p", "3000", "-r", "3",
                                    "--warmup", "1", "--input-tensor-format", "json", "--output-tensor-format", "json",
                                    "--input-data", str(data), "--json"], check=True, capture_output=True, text=True, env=env)
                runs[label].append(json.loads(r.stdout.strip().splitlines()[-1]))
        serve.stop()
        for label, rs in runs.items():
            out[f"bench_{label}"] = {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
        up.stop()
    finally:
        print(json.dumps(out, indent=1))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
