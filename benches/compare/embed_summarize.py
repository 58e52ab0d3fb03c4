#!/usr/bin/env python3
"""Turns benches/compare/embeddings.sh's results into a markdown table of medians.

    python3 benches/compare/embed_summarize.py target/compare-embed \
        --levels 1x1,1x16,32x2 --rounds 3 [--versions TEXT]

Reads DIR/<server>-<level>-r<round>.jsonl (one quiver bench --json line each) for the servers
quiver and kserve. For each level (texts per request x concurrency) it prints the median over
the rounds of embeddings/s (texts embedded per second, `throughput_infer_per_s`), p50 and p99
latency, Quiver's throughput over KServe's and KServe's p99 over Quiver's, and Quiver's average
server-side batch (texts per model execution, from its metrics). Then every round's figures.

A figure marked * comes from a round with errors, or one quiver bench reported unstable.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SERVERS = ["quiver", "kserve"]


def load(path: Path) -> dict | None:
    if not path.exists():
        return None
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else None


def flagged(r: dict) -> bool:
    return bool(sum(r.get("errors", {}).values())) or r.get("stable") is False


def median_of(runs: list[dict], get) -> tuple[float | None, str]:
    values = [get(r) for r in runs if get(r) is not None]
    if not values:
        return None, ""
    return statistics.median(values), "*" if any(flagged(r) for r in runs) else ""


def fmt(value: float | None, digits: int = 1, mark: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{mark}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b in (None, 0) else f"{a / b:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--levels", default="1x1,1x16,32x2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--versions", default="")
    args = ap.parse_args()
    levels = args.levels.split(",")
    runs = {(s, lv): [r for k in range(1, args.rounds + 1) if (r := load(args.dir / f"{s}-{lv}-r{k}.jsonl"))]
            for s in SERVERS for lv in levels}

    print(f"all-MiniLM-L6-v2, medians of {args.rounds} rounds. {args.versions}\n")
    print("| texts/request x concurrency | Quiver emb/s | KServe emb/s | Quiver/KServe "
          "| Quiver p50 / p99 ms | KServe p50 / p99 ms | KServe p99 / Quiver p99 | Quiver avg batch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for lv in levels:
        q, k = runs[("quiver", lv)], runs[("kserve", lv)]
        q_tp, q_m = median_of(q, lambda r: r["throughput_infer_per_s"])
        k_tp, k_m = median_of(k, lambda r: r["throughput_infer_per_s"])
        q50, _ = median_of(q, lambda r: r["latency_us"]["p50"] / 1000)
        q99, _ = median_of(q, lambda r: r["latency_us"]["p99"] / 1000)
        k50, _ = median_of(k, lambda r: r["latency_us"]["p50"] / 1000)
        k99, _ = median_of(k, lambda r: r["latency_us"]["p99"] / 1000)
        batch, _ = median_of(q, lambda r: (r.get("server") or {}).get("avg_batch_size"))
        print(f"| {lv} | {fmt(q_tp, 1, q_m)} | {fmt(k_tp, 1, k_m)} | {ratio(q_tp, k_tp)} "
              f"| {fmt(q50, 2)} / {fmt(q99, 2)} | {fmt(k50, 2)} / {fmt(k99, 2)} | {ratio(k99, q99)} "
              f"| {fmt(batch, 1)} |")

    print("\nEvery round (embeddings/s, p99 ms):\n")
    print("| level | server | " + " | ".join(f"round {k}" for k in range(1, args.rounds + 1)) + " |")
    print("|---|---|" + "---:|" * args.rounds)
    for lv in levels:
        for s in SERVERS:
            cells = []
            for k in range(1, args.rounds + 1):
                r = load(args.dir / f"{s}-{lv}-r{k}.jsonl")
                cells.append("n/a" if r is None else
                             f"{r['throughput_infer_per_s']:,.1f} / {r['latency_us']['p99'] / 1000:.2f}"
                             + ("*" if flagged(r) else ""))
            print(f"| {lv} | {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
