"""`quiver bench` against a real `quiver serve`: short runs in each mode give sane figures that
agree with the server's own metrics, and its files (CSV, plot) are written."""

from __future__ import annotations

import csv
import json
import subprocess

from conftest import QUIVER_BIN

# Short windows: 400 ms, at most 3, 100% stability so three windows always count as stable.
WINDOWS = ["-p", "400", "-r", "3", "-s", "100", "--warmup", "0.3"]


def bench(*args: str, timeout: float = 60) -> tuple[list[dict], str]:
    run = subprocess.run([str(QUIVER_BIN), "bench", *args], capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr
    assert "panicked" not in run.stderr, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")], run.stderr


def check_level(level: dict, model: str) -> None:
    assert level["model"] == model
    assert level["errors"] == {}, level["errors"]
    assert level["requests"] > 0 and level["throughput_infer_per_s"] > 0
    assert level["windows"] == 3 and level["stable"] is True, level
    assert abs(level["duration_s"] - 1.2) < 1e-6, level
    lat = level["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"], lat


def test_bench_closed_loop_over_http(server):
    levels, _ = bench("-m", "mlp", "-u", server.http_addr, "--concurrency-range", "1:3:2", *WINDOWS, "--json")
    assert [level["concurrency"] for level in levels] == [1, 3]
    for level in levels:
        check_level(level, "mlp")
        assert level["request_rate"] is None
        # The server counted what the client completed in the windows, give or take what was
        # in flight at their edges and what completed during the /metrics scrapes themselves
        # (each a round trip, so 2% slack at thousands of requests per second).
        server = level["server"]
        slack = max(2 * level["concurrency"], 0.02 * level["requests"])
        assert abs(server["delta"]["request_success"] - level["requests"]) <= slack, server
        # ≈1: an execution is counted before its requests' inferences, so a scrape landing
        # between the two can see one more execution than inferences.
        assert server["avg_batch_size"] >= 0.99, server


def test_bench_over_grpc_with_metrics(server):
    levels, _ = bench("-m", "mlp", "-i", "grpc", "-u", server.grpc_addr, "--concurrency", "2",
                      "--metrics-url", f"{server.http_addr}/metrics", *WINDOWS, "--json")
    assert len(levels) == 1
    check_level(levels[0], "mlp")
    assert levels[0]["protocol"] == "grpc"
    assert levels[0]["server"]["delta"]["request_success"] > 0


def test_bench_open_loop_holds_the_rate(server):
    levels, _ = bench("-m", "mlp", "-u", server.http_addr, "--request-rate-range", "100:200:100",
                      "--request-distribution", "poisson", *WINDOWS, "--json")
    assert [level["request_rate"] for level in levels] == [100.0, 200.0]
    for level in levels:
        check_level(level, "mlp")
        assert level["concurrency"] is None
        # A tiny model keeps up with a few hundred requests per second, so what was offered
        # is what completed (Poisson arrivals: a generous band over 1.2 s).
        assert abs(level["requests_per_s"] / level["request_rate"] - 1) < 0.35, level
        assert level["delayed"] == 0, level


def test_bench_json_tensors_csv_and_plot(server, tmp_path):
    table_csv, plot = tmp_path / "levels.csv", tmp_path / "sweep.png"
    data = tmp_path / "data.json"
    # mlp takes 16 floats per row; two steps, so two distinct requests at batch size 1.
    data.write_text(json.dumps({"data": [{"input": [i / 16 for i in range(16)]}, {"input": [[0.5] * 8, [0.25] * 8]}]}))
    run = subprocess.run(
        [str(QUIVER_BIN), "bench", "-m", "mlp", "-u", server.http_addr, "--concurrency-range", "1:2", *WINDOWS,
         "--input-data", str(data), "--input-tensor-format", "json", "--output-tensor-format", "json",
         "--csv", str(table_csv), "--plot", str(plot)],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    # The table: a header and one row per level, ending in the stability column.
    lines = run.stdout.splitlines()
    assert lines[0].split()[0] == "concurrency" and lines[0].split()[-1] == "stable", run.stdout
    assert [line.split()[0] for line in lines[1:]] == ["1", "2"], run.stdout
    assert "2 distinct request(s)" in run.stderr, run.stderr
    rows = list(csv.DictReader(table_csv.open()))
    assert [row["concurrency"] for row in rows] == ["1", "2"]
    for row in rows:
        assert row["errors"] == "0" and float(row["infer_per_s"]) > 0
        assert int(row["p50_us"]) <= int(row["p99_us"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_reports_bad_settings(server, tmp_path):
    def fails(*args: str) -> str:
        run = subprocess.run([str(QUIVER_BIN), "bench", *args], capture_output=True, text=True, timeout=60)
        assert run.returncode != 0
        assert "panicked" not in run.stderr, run.stderr
        return run.stderr

    assert "nope" in fails("-m", "nope", "-u", server.http_addr)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"input": [1, 2]}]}))
    assert "2 elements" in fails("-m", "mlp", "-u", server.http_addr, "--input-data", str(bad))
    assert ".png or .svg" in fails("-m", "mlp", "-u", server.http_addr, "--plot", "x.gif")
    assert "cannot be used with" in fails("-m", "mlp", "--concurrency", "2", "--request-rate-range", "10")
