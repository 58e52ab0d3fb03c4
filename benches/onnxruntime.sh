#!/usr/bin/env bash
# The onnxruntime engine's benchmark (issue 16), every figure side by side in one run:
#   1. in-process rows/s at batch 1/8/32 on the MLP, the CNN and the sklearn pipeline (iris) of
#      deploy/models: the onnxruntime engine (target/release/ceiling --engine onnxruntime),
#      Python onnxruntime (benches/onnxruntime_python.py) with the same intra-op threads, and
#      tract (one thread, as it runs); ROUNDS rounds, the engines in turn, medians printed;
#   2. served throughput with dynamic batching on the CNN: `quiver bench` (concurrency 32,
#      batch-1 requests) against cnn_ort (backend onnxruntime) and cnn_tract (backend tract), both
#      max_batch_size 32 with a 2 ms queue delay, ROUNDS runs each alternating, medians.
#
#   bash benches/onnxruntime.sh
#
# Settings (environment): ROUNDS (3), SECONDS_PER (in-process seconds per batch size, 2),
# THREADS (intra-op threads for both onnxruntimes, default nproc), DURATION (served seconds, 8),
# WARMUP (2), CONCURRENCY (32). Needs ORT_DYLIB_PATH (else the venv's wheel is used).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ROUNDS="${ROUNDS:-3}"
SECONDS_PER="${SECONDS_PER:-2}"
THREADS="${THREADS:-$(nproc)}"
DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-2}"
CONCURRENCY="${CONCURRENCY:-32}"
target="${CARGO_TARGET_DIR:-$root/target}"
quiver="$target/release/quiver"
ceiling="$target/release/ceiling"
python="${QUIVER_TEST_PYTHON:-$(bash tests/setup-venv.sh | tail -n 1)/bin/python}"
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH="$(ls "$(dirname "$python")"/../lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"
  export ORT_DYLIB_PATH
fi
out="$target/bench-results/onnxruntime"
mkdir -p "$out"
echo "==> nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg), intra-op threads $THREADS, library $ORT_DYLIB_PATH"

echo "==> in-process, $ROUNDS rounds, ${SECONDS_PER}s per batch size"
for round in $(seq 1 "$ROUNDS"); do
  for model in mlp cnn iris; do
    file="deploy/models/$model/1/model.onnx"
    "$ceiling" "$file" --engine onnxruntime --intra-op-threads "$THREADS" --seconds "$SECONDS_PER" --batch-sizes 1,8,32 \
      | awk -v m="$model" -v e=ort_engine -v r="$round" '$1 ~ /^[0-9]+$/ {print m, e, r, $1, $2}' >>"$out/inprocess.txt"
    "$python" benches/onnxruntime_python.py "$file" --threads "$THREADS" --seconds "$SECONDS_PER" --batch-sizes 1,8,32 \
      | awk -v m="$model" -v e=ort_python -v r="$round" '$1 ~ /^[0-9]+$/ {print m, e, r, $1, $2}' >>"$out/inprocess.txt"
    "$ceiling" "$file" --engine tract --seconds "$SECONDS_PER" --batch-sizes 1,8,32 \
      | awk -v m="$model" -v e=tract -v r="$round" '$1 ~ /^[0-9]+$/ {print m, e, r, $1, $2}' >>"$out/inprocess.txt"
  done
  echo "    round $round done (load $(cut -d' ' -f1 /proc/loadavg))"
done
python3 - "$out/inprocess.txt" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m, e, r, b, v = line.split()
    rows[(m, int(b), e)].append(float(v))
print(f"{'model':<6} {'batch':>5} {'engine rows/s':>14} {'python rows/s':>14} {'tract rows/s':>13} {'engine/python':>13} {'engine/tract':>12}")
for m in ["mlp", "cnn", "iris"]:
    for b in [1, 8, 32]:
        e, p, t = (statistics.median(rows[(m, b, k)]) for k in ("ort_engine", "ort_python", "tract"))
        print(f"{m:<6} {b:>5} {e:>14.0f} {p:>14.0f} {t:>13.0f} {e / p:>13.2f} {e / t:>12.2f}")
PY

echo "==> served: CNN with dynamic batching, onnxruntime vs tract"
repo="$out/models"
rm -rf "$repo"
for engine in ort tract; do
  backend=$([ "$engine" = ort ] && echo onnxruntime || echo tract)
  mkdir -p "$repo/cnn_$engine/1"
  cp deploy/models/cnn/1/model.onnx "$repo/cnn_$engine/1/"
  printf 'backend: "%s"\nmax_batch_size: 32\ndynamic_batching { max_queue_delay_microseconds: 2000 }\nparameters { key: "intra_op_thread_count" value { string_value: "%s" } }\n' \
    "$backend" "$THREADS" >"$repo/cnn_$engine/config.pbtxt"
done
log="$out/server.log"
QUIVER_LOG=info "$quiver" serve --model-repository "$repo" --http-port 0 --grpc-port 0 --http-address 127.0.0.1 \
  --grpc-address 127.0.0.1 >"$log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 300); do
  kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  port="$(sed -n 's/.*HTTP server listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)"
  if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; then break; fi
  sleep 0.1
done
: >"$out/served.jsonl"
for round in $(seq 1 "$ROUNDS"); do
  for model in cnn_ort cnn_tract; do
    line="$("$quiver" bench -m "$model" -u "127.0.0.1:$port" --concurrency "$CONCURRENCY" -b 1 --warmup "$WARMUP" \
      --measurement-interval "$((DURATION * 1000))" --max-trials 1 --json 2>>"$out/bench.stderr")"
    echo "$line" >>"$out/served.jsonl"
    echo "$line" | python3 -c 'import json,sys; r=json.load(sys.stdin); s=r["server"] or {}; print("    run %s %-10s %9.1f infer/s  p50 %6.2f ms  avg batch %s" % (sys.argv[1], r["model"], r["throughput_infer_per_s"], r["latency_us"]["p50"]/1000, s.get("avg_batch_size")))' "$round"
  done
done
python3 - "$out/served.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for model in ("cnn_ort", "cnn_tract"):
    rs = [r for r in runs if r["model"] == model]
    tp = statistics.median(r["throughput_infer_per_s"] for r in rs)
    batch = statistics.median((r["server"] or {}).get("avg_batch_size") or 0 for r in rs)
    p50 = statistics.median(r["latency_us"]["p50"] / 1000 for r in rs)
    print(f"{model:<10} median {tp:9.1f} infer/s  p50 {p50:6.2f} ms  avg batch {batch:.1f}  errors {sum(sum(r['errors'].values()) for r in rs)}")
PY
