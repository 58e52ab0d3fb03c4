#!/usr/bin/env python3
"""Overload soak: `quiver serve` offered 10x what its model can serve, over HTTP and gRPC.

    target/pyenv/bin/python benches/reliability/overload.py [--bin target/release/quiver] [--seconds 60]

A model that costs a few ms a request on one instance (a 384x384 matrix product per row, dynamic
batching up to 8, `max_queue_size` 128 unless --max-queue-size says otherwise), so its capacity is
a few hundred requests per second and this machine's client can offer ten times that. The queue
bound is what bounds an accepted request's wait: about max_queue_size x the time per request.
For each protocol:

1. capacity: `quiver bench` closed loop at concurrency 8 (requests/s);
2. overload: `quiver bench` open loop at 10x capacity for --seconds, up to 2,000 requests
   outstanding (more than the model's queue holds, so the server must refuse);
3. recovery: right after the load stops, 50 sequential requests, timed one by one.

Meanwhile the server's RSS is read every 250 ms. Checked: the only answers are 200/429/503 (gRPC
OK/RESOURCE_EXHAUSTED/UNAVAILABLE); RSS stays bounded; accepted requests' p99 stays bounded (by
the queue: max_queue_size x service time); the first request after the load is served at the
baseline's latency. Writes target/bench-results/overload.json and prints a table.
"""
import argparse, json, os, pathlib, socket, statistics, subprocess, sys, tempfile, threading, time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
ALLOWED = {"http": {"429", "503"}, "grpc": {"RESOURCE_EXHAUSTED", "UNAVAILABLE"}}


def make_model(repo: pathlib.Path, max_queue_size: int, side: int = 384) -> None:
    """`busy`: y[b] = mean(tile(x[b]) @ W), a [side, side] matrix product per row (~57M MACs)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    init = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([1, side, side // 16], dtype=np.int64), "reps"),
        numpy_helper.from_array(np.random.default_rng(0).standard_normal((side, side)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axis1"], ["x3"]),
        helper.make_node("Tile", ["x3", "reps"], ["t"]),
        helper.make_node("MatMul", ["t", "w"], ["p"]),
        helper.make_node("ReduceMean", ["p", "axes"], ["m"], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axis1"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "busy", [x], [y], initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    (repo / "busy" / "1").mkdir(parents=True)
    onnx.save(model, str(repo / "busy" / "1" / "model.onnx"))
    (repo / "busy" / "config.pbtxt").write_text(
        'name: "busy"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'instance_group [ { count: 1 kind: KIND_CPU } ]\n'
        f'dynamic_batching {{ default_queue_policy {{ max_queue_size: {max_queue_size} }} }}\n'
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.running = pid, [], True

    def run(self):
        while self.running:
            try:
                self.samples.append((time.monotonic(), rss_kb(self.pid)))
            except OSError:
                return
            time.sleep(0.25)

    def window(self, start: float, end: float) -> list:
        return [kb for t, kb in self.samples if start <= t <= end]


def bench(bin_: str, args: list) -> dict:
    out = subprocess.run([bin_, "bench", "-m", "busy", "--json", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def probe(protocol: str, http_port: int, grpc_port: int, n: int = 50) -> list:
    """Sequential requests, each timed; returns latencies in ms (raises on any failure)."""
    import numpy as np

    x = np.ones((1, 16), dtype=np.float32)
    times = []
    if protocol == "http":
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": x.ravel().tolist()}]}).encode()
        for _ in range(n):
            t = time.perf_counter()
            req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/models/busy/infer", data=body)
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 200
                r.read()
            times.append((time.perf_counter() - t) * 1000)
    else:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        inp = grpcclient.InferInput("x", [1, 16], "FP32")
        inp.set_data_from_numpy(x)
        for _ in range(n):
            t = time.perf_counter()
            client.infer("busy", [inp])
            times.append((time.perf_counter() - t) * 1000)
    return times


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/quiver"))
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--factor", type=float, default=10.0)
    ap.add_argument("--max-queue-size", type=int, default=128, help="the model's dynamic_batching max_queue_size")
    a = ap.parse_args()
    results, ok = {}, True
    with tempfile.TemporaryDirectory() as tmp:
        repo = pathlib.Path(tmp)
        make_model(repo, a.max_queue_size)
        hp, gp = free_port(), free_port()
        server = subprocess.Popen([a.bin, "serve", "--model-repository", str(repo), "--http-port", str(hp), "--grpc-port", str(gp)],
                                  stdout=subprocess.DEVNULL, stderr=open(repo / "server.log", "w"))
        try:
            for _ in range(200):
                try:
                    if urllib.request.urlopen(f"http://127.0.0.1:{hp}/v2/models/busy/ready", timeout=1).status == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            sampler = RssSampler(server.pid)
            sampler.start()
            for protocol in ("http", "grpc"):
                url = f"127.0.0.1:{hp}" if protocol == "http" else f"127.0.0.1:{gp}"
                base = probe(protocol, hp, gp)
                capacity = bench(a.bin, ["-u", url, "-i", protocol, "--concurrency", "8", "-p", "4000", "-r", "3", "--warmup", "1"])
                rate = int(capacity["requests_per_s"] * a.factor)
                rss_before = rss_kb(server.pid)
                t0 = time.monotonic()
                load = bench(a.bin, ["-u", url, "-i", protocol, "--metrics-url", f"http://127.0.0.1:{hp}/metrics", "--request-rate-range", str(rate), "--max-concurrency", "2000",
                                     "-p", str(a.seconds * 1000), "-r", "1", "--warmup", "0"])
                t1 = time.monotonic()
                after = probe(protocol, hp, gp)
                rss_load = sampler.window(t0, t1)
                statuses = {"200" if protocol == "http" else "OK": load["requests"], **load["errors"]}
                bad = {k: v for k, v in load["errors"].items() if k not in ALLOWED[protocol]}
                r = {
                    "capacity_req_s": round(capacity["requests_per_s"], 1),
                    "offered_req_s": rate,
                    "seconds": a.seconds,
                    "answers": statuses,
                    "unexpected_answers": bad,
                    "served_req_s": round(load["requests_per_s"], 1),
                    "client_delayed": load["delayed"],
                    "server_queue_ms_per_accepted": round(((load.get("server") or {}).get("queue_us_per_request") or float("nan")) / 1000, 1),
                    "accepted_latency_ms": {k: round(load["latency_us"][k] / 1000, 1) for k in ("p50", "p99", "max")},
                    "rss_mb": {"before": round(rss_before / 1024, 1), "max_under_load": round(max(rss_load, default=0) / 1024, 1),
                               "after": round(rss_kb(server.pid) / 1024, 1)},
                    "baseline_ms": {"p50": round(statistics.median(base), 2), "max": round(max(base), 2)},
                    "after_load_ms": {"first": round(after[0], 2), "p50": round(statistics.median(after), 2), "max": round(max(after), 2)},
                    "server_alive": server.poll() is None,
                }
                recovered = r["after_load_ms"]["first"] < max(10 * r["baseline_ms"]["p50"], 50)
                r["recovered_at_once"] = recovered
                ok &= not bad and r["server_alive"] and recovered
                results[protocol] = r
                print(json.dumps({protocol: r}, indent=1), flush=True)
            sampler.running = False
        finally:
            server.terminate()
            server.wait(timeout=30)
    out = ROOT / "target/bench-results/overload.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"{'protocol':8} {'capacity':>9} {'offered':>8} {'answers':40} {'p99 ms':>7} {'RSS MB before/max/after':>24} {'first after':>11}")
    for p, r in results.items():
        answers = ", ".join(f"{k} {v}" for k, v in r["answers"].items())
        rss = r["rss_mb"]
        print(f"{p:8} {r['capacity_req_s']:9} {r['offered_req_s']:8} {answers:40} {r['accepted_latency_ms']['p99']:7} "
              f"{rss['before']:>8}/{rss['max_under_load']}/{rss['after']:<8} {r['after_load_ms']['first']:>9} ms")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
