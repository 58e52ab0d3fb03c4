"""`quiver autoscaler simulate` on a shipped trace: the spike drives the KPA into panic, the
count never exceeds max-scale nor drops while panicking, the plot is a real PNG, and bad input
is a clear error rather than a crash."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import QUIVER_BIN, REPO_ROOT

TRACES = REPO_ROOT / "autoscaler" / "simulator" / "traces"
MAX_SCALE = 8  # the spike alone would ask for 9
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def simulate(*args: str) -> subprocess.CompletedProcess:
    assert QUIVER_BIN.exists(), f"{QUIVER_BIN} does not exist: build it (cargo build --release) or set QUIVER_BIN"
    # Without backtrace variables, so an error shows as what a user would see.
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
    return subprocess.run([str(QUIVER_BIN), "autoscaler", "simulate", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def assert_no_crash(run: subprocess.CompletedProcess) -> None:
    for sign in ("panicked", "panic:", "stack backtrace", "RUST_BACKTRACE"):
        assert sign not in run.stderr, run.stderr


def test_spike_enters_panic_within_bounds_and_plots(tmp_path):
    plot = tmp_path / "x.png"
    run = simulate("--trace", str(TRACES / "spike.csv"), "--json", "--plot", str(plot),
                   "--set", f"autoscaling.knative.dev/max-scale={MAX_SCALE}")
    assert run.returncode == 0, run.stderr
    assert_no_crash(run)
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["time_s"] for r in rows] == list(range(600))
    for r in rows:
        assert {"time_s", "load", "desired", "ready", "panic", "queued"} <= r.keys(), r
        assert 0 <= r["ready"] <= MAX_SCALE and 0 <= r["desired"] <= MAX_SCALE, r
    spike = [r for r in rows if 200 <= r["time_s"] < 230]
    assert spike[0]["panic"], "the spike's first second crosses the 200% panic threshold"
    assert not any(r["panic"] for r in rows[:200]), "no panic at the baseline"
    assert max(r["desired"] for r in rows) == MAX_SCALE
    assert any(r["queued"] > 0 for r in spike), "requests wait while replicas start"
    for before, after in zip(rows, rows[1:]):
        if before["panic"] and after["panic"]:
            assert after["desired"] >= before["desired"], (before, after)
    # Panic ends a stable window after the last trigger, and the count comes back down.
    assert not rows[-1]["panic"] and rows[-1]["desired"] < MAX_SCALE
    assert plot.read_bytes().startswith(PNG_SIGNATURE)


def test_the_default_output_is_a_table_and_summary(tmp_path):
    plot = tmp_path / "day.svg"
    run = simulate("--trace", str(TRACES / "diurnal.csv"), "--plot", str(plot))
    assert run.returncode == 0, run.stderr
    assert "metric rps" in run.stdout and "summary over 1440 s" in run.stdout, run.stdout
    assert len(run.stdout.splitlines()) < 200, "rows only where something changed"
    assert plot.read_text().lstrip().startswith("<svg")


@pytest.mark.parametrize("content, message", [
    ("time,load\n0,1\n", "header"),
    ("time_s,concurrency\n0,1\n5,1\n", "one row per second"),
    ("time_s,concurrency\n0,-3\n", "line 2"),
    ("time_s,rps\n0,NaN\n", "line 2"),
    ("time_s,concurrency\n", "no rows"),
    ("\xff\xfe\x00garbage", "header"),
])
def test_a_bad_trace_is_a_clear_error(tmp_path, content, message):
    trace = tmp_path / "bad.csv"
    trace.write_bytes(content.encode("latin-1"))
    run = simulate("--trace", str(trace), "--json")
    assert run.returncode != 0
    assert message in run.stderr, run.stderr
    assert run.stdout == ""
    assert_no_crash(run)


@pytest.mark.parametrize("args, message", [
    (["--trace", "/nonexistent/trace.csv"], "/nonexistent/trace.csv"),
    (["--plot", "out.gif"], ".png or .svg"),
    (["--set", "scaleMetric=cpu"], "HPA"),
    (["--set", "autoscaling.knative.dev/window=2s"], "autoscaling.knative.dev/window"),
])
def test_bad_arguments_are_clear_errors(args, message):
    if "--trace" not in args:
        args = ["--trace", str(TRACES / "spike.csv"), *args]
    run = simulate(*args)
    assert run.returncode != 0
    assert message in run.stderr, run.stderr
    assert_no_crash(run)
