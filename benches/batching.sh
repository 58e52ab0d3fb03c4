#!/usr/bin/env bash
# The batching benchmark: one compute-bound MLP served with and without dynamic batching,
# driven by `quiver bench` at concurrency 32 with batch-1 requests, plus the in-process ceiling.
# Models (benches/models/generate_mlp.py): mlp4m_batched (dynamic_batching, 2 ms delay),
# mlp4m_unbatched (max_batch_size 0: every request runs alone) and mlp4m_default_scheduler
# (max_batch_size 32, no scheduler block: Triton's default scheduler, every request alone).
#
#   bash benches/batching.sh
#
# Steps:
#   1. builds target/release/quiver and target/release/ceiling (cached when nothing changed);
#   2. generates the three models into target/bench-models;
#   3. starts `quiver serve` on free ports, runs `quiver bench` RUNS times per model,
#      alternating the models so drift in the machine's load hits both alike, and prints each
#      run and the medians; stops the server;
#   4. runs the in-process ceiling (rows/s of the bare model at batch 1..32, one thread).
#
# Settings (environment): RUNS (default 5), DURATION (seconds measured per run, 10),
# WARMUP (seconds of unmeasured load before each, 3), CONCURRENCY (32), BATCH (1),
# CEILING_SECONDS (per batch size, 3), SKIP_CEILING=1 to skip step 4.
# Raw results: target/bench-results/batching-<model>.jsonl (one JSON object per run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

RUNS="${RUNS:-5}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
CONCURRENCY="${CONCURRENCY:-32}"
BATCH="${BATCH:-1}"
CEILING_SECONDS="${CEILING_SECONDS:-3}"
MODELS=(mlp4m_batched mlp4m_unbatched mlp4m_default_scheduler)
repo="$root/target/bench-models"
results="$root/target/bench-results"
quiver="$root/target/release/quiver"

echo "==> building (release)"
cargo build --release --quiet
cargo build --release --quiet -p quiver-ceiling --bin ceiling

echo "==> generating the models into $repo"
venv="$(bash tests/setup-venv.sh | tail -n 1)"
"$venv/bin/python" benches/models/generate_mlp.py "$repo"

echo "==> starting quiver serve"
mkdir -p "$results"
log="$results/server.log"
QUIVER_LOG=info "$quiver" serve --model-repository "$repo" --http-port 0 --grpc-port 0 --http-address 127.0.0.1 \
  --grpc-address 127.0.0.1 >"$log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 300); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "quiver serve exited:" >&2
    cat "$log" >&2
    exit 1
  fi
  port="$(sed -n 's/.*HTTP server listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)"
  if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; then
    break
  fi
  sleep 0.1
done
[ -n "$port" ] || { echo "quiver serve did not become ready:" >&2; cat "$log" >&2; exit 1; }
url="127.0.0.1:$port"
echo "    ready at http://$url (log: $log)"

# Prints one run's JSON line (stdin) as one line of text.
print_run='
import json, sys
r = json.load(sys.stdin)
s = r["server"] or {}
lat = r["latency_us"]
f = lambda v, p: "-" if v is None else "%.*f" % (p, v)
print("    run %s %-16s %8.1f infer/s  p50 %7.2f ms  p99 %7.2f ms  errors %d  avg batch %s  queue %s us/req  compute %s us/req" % (
    sys.argv[1], r["model"], r["throughput_infer_per_s"], lat["p50"] / 1000, lat["p99"] / 1000,
    sum(r["errors"].values()), f(s.get("avg_batch_size"), 2), f(s.get("queue_us_per_request"), 0),
    f(s.get("compute_infer_us_per_request"), 0)))
'
for model in "${MODELS[@]}"; do
  : >"$results/batching-$model.jsonl"
done
echo "==> quiver bench: concurrency $CONCURRENCY, batch $BATCH, ${WARMUP}s warmup + ${DURATION}s measured, $RUNS runs per model"
for run in $(seq 1 "$RUNS"); do
  for model in "${MODELS[@]}"; do
    line="$("$quiver" bench -m "$model" -u "$url" --concurrency "$CONCURRENCY" -b "$BATCH" \
      --warmup "$WARMUP" --measurement-interval "$((DURATION * 1000))" --max-trials 1 --json 2>>"$results/bench.stderr")"
    echo "$line" >>"$results/batching-$model.jsonl"
    echo "$line" | python3 -c "$print_run" "$run"
  done
done

echo "==> medians over $RUNS runs (concurrency $CONCURRENCY, batch $BATCH)"
python3 - "$results" "${MODELS[@]}" <<'EOF'
import json, statistics, sys
from pathlib import Path

results, models = Path(sys.argv[1]), sys.argv[2:]
def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
def fmt(v, p):
    return "-" if v is None else f"{v:.{p}f}"
print(f"{'model':<16} {'infer/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>6} {'avg batch':>9} {'queue us':>9} {'compute us':>10}")
for model in models:
    runs = [json.loads(l) for l in (results / f"batching-{model}.jsonl").read_text().splitlines() if l.strip()]
    lat = lambda k: med([r["latency_us"][k] / 1000 for r in runs])
    srv = lambda k: med([(r["server"] or {}).get(k) for r in runs])
    print(f"{model:<16} {fmt(med([r['throughput_infer_per_s'] for r in runs]), 1):>9} {fmt(lat('p50'), 2):>8} "
          f"{fmt(lat('p90'), 2):>8} {fmt(lat('p99'), 2):>8} {sum(sum(r['errors'].values()) for r in runs):>6} "
          f"{fmt(srv('avg_batch_size'), 2):>9} {fmt(srv('queue_us_per_request'), 0):>9} "
          f"{fmt(srv('compute_infer_us_per_request'), 0):>10}")
EOF

kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
trap - EXIT

if [ "${SKIP_CEILING:-0}" != 1 ]; then
  echo "==> in-process ceiling (one thread, no server)"
  "$root/target/release/ceiling" "$repo/mlp4m_batched/1/model.onnx" --seconds "$CEILING_SECONDS"
fi
