#!/usr/bin/env bash
# The request path against the HTTP ceiling: two Quiver builds (say, before and after a change)
# and the bare hyper "hello" server, on the comparison's sklearn model, alternating in rounds
# so that drift on a shared machine falls on all three alike. Prints each run and the medians.
#
#   QUIVER_A=path/to/old/quiver QUIVER_B=target/release/quiver ROUNDS=3 \
#     PYTHON=target/pyenv/bin/python bash benches/compare/request_path.sh
#
# The model comes from prepare.py (scikit-learn, skl2onnx: the test venv has them). The load is
# run.sh's: quiver bench (B's), V2 JSON tensors, perf_analyzer-style windows, at CONCURRENCY.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

QUIVER_A="${QUIVER_A:?the first quiver binary}"
QUIVER_B="${QUIVER_B:-$root/target/release/quiver}"
HELLO="${HELLO:-$root/target/release/hello}"
ROUNDS="${ROUNDS:-3}"
CONCURRENCY="${CONCURRENCY:-16}"
INTERVAL_MS="${INTERVAL_MS:-5000}"
MAX_TRIALS="${MAX_TRIALS:-5}"
WARMUP="${WARMUP:-2}"
MODEL=logreg
python="${PYTHON:-python3}"
here="$root/benches/compare"
out="$root/target/request-path"
models="$out/models"
mkdir -p "$out"

# shellcheck source=benches/compare/lib.sh
source "$here/lib.sh"
trap stop_server EXIT

[ -f "$models/quiver/$MODEL/1/model.onnx" ] || "$python" "$here/prepare.py" "$models"
quiver="$QUIVER_B" # the load generator
window=(--warmup "$WARMUP" -p "$INTERVAL_MS" -r "$MAX_TRIALS")
format=(--input-tensor-format json --output-tensor-format json --input-data "$models/input-data.json")

start() {
  local peer="$1" binary="$2" http grpc
  http="$(free_port)"
  grpc="$(free_port)"
  case "$peer" in
    hello) "$binary" --port "$http" --metadata "$out/metadata.json" >"$out/$peer.log" 2>&1 & ;;
    *) "$binary" serve --model-repository "$models/quiver" --http-address 127.0.0.1 --http-port "$http" \
         --grpc-address 127.0.0.1 --grpc-port "$grpc" >"$out/$peer.log" 2>&1 & ;;
  esac
  server_pid=$!
  url="127.0.0.1:$http"
  wait_ready "$peer" "$out/$peer.log" "$MODEL"
  [ -f "$out/metadata.json" ] || curl -sf "http://$url/v2/models/$MODEL" >"$out/metadata.json"
}

: >"$out/runs.jsonl"
for round in $(seq 1 "$ROUNDS"); do
  for peer in a b hello; do
    case "$peer" in a) binary="$QUIVER_A" ;; b) binary="$QUIVER_B" ;; hello) binary="$HELLO" ;; esac
    [ "$peer" = hello ] && [ ! -f "$out/metadata.json" ] && continue
    echo "==> round $round: $peer"
    start "$peer" "$binary"
    : >"$out/$peer.jsonl"
    bench "$out/$peer.jsonl" --concurrency "$CONCURRENCY"
    stop_server
    "$python" -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(json.dumps({"round": int(sys.argv[2]), "peer": sys.argv[3], "rps": r["requests_per_s"], "p99_us": r["latency_us"]["p99"]}))' \
      "$out/$peer.jsonl" "$round" "$peer" >>"$out/runs.jsonl"
  done
done

"$python" - "$out/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = {p: statistics.median(r["rps"] for r in runs if r["peer"] == p) for p in ("a", "b", "hello") if any(r["peer"] == p for r in runs)}
for p, v in med.items():
    print(f"median {p:>5}: {v:10.1f} req/s")
if "hello" in med:
    for p in ("a", "b"):
        print(f"{p} / hello: {med[p] / med['hello']:.3f}")
print(f"b / a: {med['b'] / med['a']:.3f}")
PY
