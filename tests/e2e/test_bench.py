"""`quiver bench` against a real `quiver serve`: a short closed-loop run gives sane figures that
agree with the server's own metrics."""

from __future__ import annotations

import json
import subprocess

from conftest import QUIVER_BIN


def test_bench_reports_sane_figures(server):
    run = subprocess.run(
        [str(QUIVER_BIN), "bench", "-m", "mlp", "-u", server.http_addr, "--concurrency-range", "1:3:2",
         "--duration", "1", "--warmup", "0.5", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    levels = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [level["concurrency"] for level in levels] == [1, 3]
    for level in levels:
        assert level["model"] == "mlp"
        assert level["errors"] == {}, level["errors"]
        assert level["requests"] > 0 and level["throughput_infer_per_s"] > 0
        lat = level["latency_us"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"], lat
        # The server counted what the client completed in the window, give or take what was
        # in flight at its edges and what completed during the /metrics scrapes themselves
        # (each a round trip, so 2% slack at thousands of requests per second).
        server = level["server"]
        slack = max(2 * level["concurrency"], 0.02 * level["requests"])
        assert abs(server["delta"]["request_success"] - level["requests"]) <= slack, server
        # ≈1: an execution is counted before its requests' inferences, so a scrape landing
        # between the two can see one more execution than inferences.
        assert server["avg_batch_size"] >= 0.99, server


def test_bench_reports_an_unknown_model(server):
    run = subprocess.run([str(QUIVER_BIN), "bench", "-m", "nope", "-u", server.http_addr, "--duration", "1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "nope" in run.stderr
