#!/usr/bin/env bash
# Served throughput against the in-process ceiling on the same cores: the `ceiling` binary and
# `quiver serve` are pinned to SERVER_CPUS in turn, the load generator (`quiver bench`) to
# CLIENT_CPUS, so the server gets exactly the CPU the in-process run had and the client takes
# none of it. Needs a machine with enough cores to split (the default split wants 16).
#
#   bash benches/served_ratio.sh QUIVER_BIN CEILING_BIN MODEL.onnx OUT_DIR
#
# The model is served with `backend: "onnxruntime"` (its library from ORT_DYLIB_PATH),
# `max_batch_size` BATCH, dynamic batching with a 2 ms queue delay, intra_op_thread_count
# THREADS; the ceiling runs the same engine with the same threads at batch BATCH.
# Environment: SERVER_CPUS (0-3), CLIENT_CPUS (4-15), THREADS (4), BATCH (32), ROUNDS (3),
# CONCURRENCY (64 128: each level measured ROUNDS times), SECONDS_PER (5), EXTRA_CONFIG (lines
# appended to the served model's config.pbtxt, e.g. more `parameters`).
set -euo pipefail
bin=$1 ceiling=$2 model=$3 out=$4
server_cpus=${SERVER_CPUS:-0-3} client_cpus=${CLIENT_CPUS:-4-15}
threads=${THREADS:-4} batch=${BATCH:-32} rounds=${ROUNDS:-3} seconds=${SECONDS_PER:-5}
concurrency=${CONCURRENCY:-64 128}
: "${ORT_DYLIB_PATH:?set ORT_DYLIB_PATH to libonnxruntime.so}"
mkdir -p "$out"
rm -f "$out/ceiling.txt" "$out/bench.jsonl" "$out/bench.stderr"
name=served_ratio
repo=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$repo"' EXIT
mkdir -p "$repo/$name/1"
cp "$model" "$repo/$name/1/model.onnx"
cat >"$repo/$name/config.pbtxt" <<EOF
name: "$name"
backend: "onnxruntime"
max_batch_size: $batch
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 2000 }
parameters { key: "intra_op_thread_count" value: { string_value: "$threads" } }
${EXTRA_CONFIG:-}
EOF
echo "==> $(nproc) cores; server and ceiling on $server_cpus, client on $client_cpus; $threads intra-op threads, batch $batch" | tee "$out/summary.txt"

echo "==> in-process ceiling, $rounds rounds" | tee -a "$out/summary.txt"
for r in $(seq "$rounds"); do
  taskset -c "$server_cpus" "$ceiling" "$model" --engine onnxruntime --intra-op-threads "$threads" \
    --seconds "$seconds" --batch-sizes "$batch" | tee -a "$out/ceiling.txt" | grep '^ceiling:' | tee -a "$out/summary.txt"
done

taskset -c "$server_cpus" "$bin" serve --model-repository "$repo" --http-port 18000 --grpc-port 18001 \
  --onnxruntime-library "$ORT_DYLIB_PATH" >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf localhost:18000/v2/health/ready >/dev/null && break; sleep 0.2; done
curl -sf "localhost:18000/v2/models/$name/config" | python3 -c 'import json,sys; c=json.load(sys.stdin); print("==> served by", c.get("backend"))' | tee -a "$out/summary.txt"

for c in $concurrency; do
  for r in $(seq "$rounds"); do
    taskset -c "$client_cpus" "$bin" bench -m "$name" -u localhost:18000 --concurrency "$c" -b 1 \
      --warmup 2 --measurement-interval "$((seconds * 1000))" --max-trials 1 --json 2>>"$out/bench.stderr" \
      | tee -a "$out/bench.jsonl" | python3 -c '
import json, sys
r = json.load(sys.stdin); s = r["server"] or {}
print("served: concurrency %s round %s %.1f infer/s p50 %.2f ms avg batch %s" % (sys.argv[1], sys.argv[2],
      r["throughput_infer_per_s"], r["latency_us"]["p50"] / 1000, s.get("avg_batch_size")))' "$c" "$r" | tee -a "$out/summary.txt"
  done
done

python3 - "$out" <<'PY' | tee -a "$out/summary.txt"
import json, re, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
ceil = [float(m.group(1)) for m in re.finditer(r"^ceiling: ([0-9.]+) rows/s", (out / "ceiling.txt").read_text(), re.M)]
runs = [json.loads(l) for l in (out / "bench.jsonl").read_text().splitlines() if l.strip()]
best_in = statistics.median(ceil)
by_c = {}
for r in runs:
    by_c.setdefault(r["concurrency"] if "concurrency" in r else r.get("level"), []).append(r["throughput_infer_per_s"])
print(f"in-process median {best_in:.1f} rows/s")
for c, v in by_c.items():
    m = statistics.median(v)
    print(f"served concurrency {c}: median {m:.1f} infer/s = {m / best_in:.2f} of in-process")
PY
