#!/usr/bin/env python3
"""Turns benches/compare/run.sh's results into markdown tables.

    python3 benches/compare/summarize.py target/compare [--versions TEXT]

Reads DIR/{quiver,kserve,mlserver,hello}.jsonl (quiver bench --json lines: closed-loop levels,
with `concurrency`, and open-loop levels, with `request_rate`) and DIR/wrk.jsonl (the quiver
bench line and wrk's line of the cross-check). Prints:

- closed loop: requests/s of every server at each concurrency, and Quiver's ratio to each
  (goals: >= 20x KServe, >= 10x MLServer, >= 0.6 of the hello ceiling), then p99 latency;
- open loop: p99 at the one equal offered rate, and each peer's p99 over Quiver's;
- the wrk cross-check: both rates and their ratio (goal: within 15%).

A figure marked * comes from a level with errors, or one quiver bench reported unstable.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SERVERS = ["quiver", "kserve", "mlserver", "hello"]
GOALS = {"kserve": 20.0, "mlserver": 10.0, "hello": 0.6}


def load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def errors(r: dict) -> int:
    return sum(r.get("errors", {}).values())


def flag(r: dict) -> str:
    return "*" if errors(r) or r.get("stable") is False else ""


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--versions", default="")
    args = ap.parse_args()

    closed: dict[str, dict[int, dict]] = {}
    rate: dict[str, dict] = {}
    for s in SERVERS:
        for r in load(args.dir / f"{s}.jsonl"):
            if r.get("request_rate") is not None:
                rate[s] = r
            elif r.get("concurrency") is not None:
                closed.setdefault(s, {})[r["concurrency"]] = r
    present = [s for s in SERVERS if s in closed or s in rate]
    peers = [s for s in present if s != "quiver"]

    out = ["## Peer comparison (`benches/compare/run.sh`)", ""]
    if args.versions:
        out += [f"Versions: {args.versions}.", ""]
    missing = [s for s in SERVERS if s not in present]
    if missing:
        out += [f"No results for: {', '.join(missing)} (not run, or failed: see {args.dir}/<server>.log).", ""]

    levels = sorted({c for s in closed.values() for c in s})
    if levels:
        out += ["### Closed loop: requests/s at equal concurrency", ""]
        head = ["concurrency"] + present + [f"quiver/{p}" for p in peers if "quiver" in closed]
        out += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
        for c in levels:
            row = [str(c)]
            for s in present:
                r = closed.get(s, {}).get(c)
                row.append(fmt(r and r["requests_per_s"]) + (flag(r) if r else ""))
            q = closed.get("quiver", {}).get(c)
            if "quiver" in closed:
                for p in peers:
                    r = closed.get(p, {}).get(c)
                    row.append(fmt(ratio(q and q["requests_per_s"], r and r["requests_per_s"]), 2))
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        if "quiver" in closed:
            for p in peers:
                got = {c: ratio(closed["quiver"][c]["requests_per_s"], closed[p][c]["requests_per_s"])
                       for c in levels if c in closed["quiver"] and c in closed.get(p, {})}
                got = {c: v for c, v in got.items() if v is not None}
                if got:
                    lo, hi = min(got.values()), max(got.values())
                    met = [str(c) for c, v in got.items() if v >= GOALS[p]]
                    span = f"{lo:.2f}" if lo == hi else f"{lo:.2f}–{hi:.2f}"
                    out.append(f"- quiver/{p}: {span} (goal ≥ {GOALS[p]:g}: "
                               + (f"met at concurrency {', '.join(met)}" if met else "not met") + ")")
            out.append("")

        out += ["### Closed loop: p99 latency (ms) at equal concurrency", ""]
        head = ["concurrency"] + present
        out += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
        for c in levels:
            row = [str(c)]
            for s in present:
                r = closed.get(s, {}).get(c)
                row.append(fmt(r and r["latency_us"]["p99"] / 1000, 2) + (flag(r) if r else ""))
            out.append("| " + " | ".join(row) + " |")
        out.append("")

    if rate:
        offered = sorted({r["request_rate"] for r in rate.values()})
        out += [f"### Open loop at {', '.join(fmt(o, 0) for o in offered)} req/s offered: p99 at equal rate", ""]
        out += ["| server | offered req/s | achieved req/s | p50 ms | p90 ms | p99 ms | delayed | errors | p99 / quiver p99 |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        q = rate.get("quiver")
        for s in present:
            r = rate.get(s)
            if r is None:
                continue
            lat = r["latency_us"]
            out.append(f"| {s} | {fmt(r['request_rate'], 0)} | {fmt(r['requests_per_s'])}{flag(r)} | {fmt(lat['p50'] / 1000, 2)} "
                       f"| {fmt(lat['p90'] / 1000, 2)} | {fmt(lat['p99'] / 1000, 2)} | {r.get('delayed', '–')} | {errors(r)} "
                       f"| {fmt(ratio(lat['p99'], q and q['latency_us']['p99']), 2)} |")
        out.append("")

    wrk_lines = load(args.dir / "wrk.jsonl")
    qb = next((r for r in wrk_lines if r.get("tool") != "wrk"), None)
    wk = next((r for r in wrk_lines if r.get("tool") == "wrk"), None)
    if qb and wk:
        c = qb["concurrency"]
        out += [f"### quiver bench vs wrk: Quiver, V2 JSON tensors, concurrency {c}", ""]
        out += ["| tool | req/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
        out.append(f"| quiver bench | {fmt(qb['requests_per_s'])}{flag(qb)} | {fmt(qb['latency_us']['p50'] / 1000, 2)} "
                   f"| {fmt(qb['latency_us']['p99'] / 1000, 2)} | {errors(qb)} |")
        out.append(f"| wrk | {fmt(wk['requests_per_s'])} | {fmt(wk['latency_us']['p50'] / 1000, 2)} "
                   f"| {fmt(wk['latency_us']['p99'] / 1000, 2)} | {wk['socket_errors'] + wk['non_2xx']} |")
        x = qb["requests_per_s"] / wk["requests_per_s"] if wk["requests_per_s"] else float("nan")
        out += ["", f"quiver bench / wrk = {x:.3f} (goal: within 15%, {'met' if abs(x - 1) <= 0.15 else 'not met'}).", ""]

    if any(flag(r) for s in closed.values() for r in s.values()) or any(flag(r) for r in rate.values()):
        out += ["\\* the level had errors, or quiver bench did not find it stable.", ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
