#!/usr/bin/env bash
# Peer comparison: Quiver against KServe's Python ModelServer, Seldon MLServer and a bare hyper
# "hello" server (the HTTP ceiling), one after the other on the same model and the same
# `quiver bench` load, plus a cross-check of `quiver bench` against wrk. Run by hand, not in CI:
#
#   bash benches/compare/run.sh
#
# Steps:
#   1. builds target/release/quiver and target/release/hello;
#   2. creates the venvs target/compare-venv/{kserve,mlserver} (two: kserve and mlserver pin
#      conflicting starlette/fastapi versions), reinstalling only when requirements changed;
#   3. fetches wrk (Debian package, no root) into target/tools;
#   4. trains the model and lays it out for every server (prepare.py) in target/compare/models;
#   5. for each server in turn: starts it, waits until ready, runs the closed-loop levels and
#      the open-loop rate, stops it (SIGTERM). Against Quiver it also runs the wrk cross-check;
#   6. prints the markdown summary (summarize.py) and writes it to target/compare/summary.md.
#
# Settings (environment): CONCURRENCY (closed-loop levels, comma-separated, "1,4,16"),
# RATE (open-loop request rate, 200 req/s), DISTRIBUTION (constant|poisson, constant),
# INTERVAL_MS (measurement window, 5000), MAX_TRIALS (windows per level at most, 5),
# WARMUP (seconds before each level, 2), PEERS ("quiver kserve mlserver hello"),
# WRK_CONCURRENCY (4), WRK_SECONDS (10), WRK_THREADS (1), KSERVE_WORKERS (1),
# MLSERVER_WORKERS (MLServer's parallel_workers, 0: inference in the server process),
# SKIP_BUILD=1 to use the binaries as they are.
# Results: target/compare/<server>.jsonl (quiver bench --json lines), target/compare/wrk.jsonl,
# server logs target/compare/<server>.log, summary target/compare/summary.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

CONCURRENCY="${CONCURRENCY:-1,4,16}"
RATE="${RATE:-200}"
DISTRIBUTION="${DISTRIBUTION:-constant}"
INTERVAL_MS="${INTERVAL_MS:-5000}"
MAX_TRIALS="${MAX_TRIALS:-5}"
WARMUP="${WARMUP:-2}"
PEERS="${PEERS:-quiver kserve mlserver hello}"
WRK_CONCURRENCY="${WRK_CONCURRENCY:-4}"
WRK_SECONDS="${WRK_SECONDS:-10}"
WRK_THREADS="${WRK_THREADS:-1}"
KSERVE_WORKERS="${KSERVE_WORKERS:-1}"
MLSERVER_WORKERS="${MLSERVER_WORKERS:-0}"
MODEL=logreg

here="$root/benches/compare"
out="$root/target/compare"
models="$out/models"
venvs="$root/target/compare-venv"
tools="$root/target/tools"
quiver="$root/target/release/quiver"
hello="$root/target/release/hello"
python="${PYTHON:-python3}"
mkdir -p "$out"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building target/release/quiver and target/release/hello"
  cargo build --release --quiet -p quiver -p quiver-benches --bin quiver --bin hello
fi

# shellcheck source=benches/compare/lib.sh
source "$here/lib.sh"

echo "==> venvs in $venvs"
make_venv "$venvs/kserve" "$here/requirements-kserve.txt"
make_venv "$venvs/mlserver" "$here/requirements-mlserver.txt"
kserve_version="$("$venvs/kserve/bin/python" -c 'import importlib.metadata as m; print(m.version("kserve"))')"
mlserver_version="$("$venvs/mlserver/bin/python" -c 'import importlib.metadata as m; print(m.version("mlserver"))')"

echo "==> wrk in $tools"
wrk_lib="$tools/root/usr/lib/x86_64-linux-gnu"
wrk="$tools/root/usr/bin/wrk"
if [ ! -x "$wrk" ]; then
  mkdir -p "$tools/debs"
  (cd "$tools/debs" && apt-get download wrk libluajit-5.1-2 libluajit-5.1-common)
  for deb in "$tools"/debs/*.deb; do dpkg -x "$deb" "$tools/root"; done
fi
if LD_LIBRARY_PATH="$wrk_lib" ldd "$wrk" | grep -q 'not found'; then
  echo "wrk misses libraries (fetch their Debian packages into $tools/debs and dpkg -x them):" >&2
  LD_LIBRARY_PATH="$wrk_lib" ldd "$wrk" | grep 'not found' >&2
  exit 1
fi
run_wrk() { LD_LIBRARY_PATH="$wrk_lib" WRK_BODY="$models/request.json" "$wrk" "$@"; }

echo "==> model"
rm -rf "$models"
"$venvs/mlserver/bin/python" "$here/prepare.py" "$models"

# The flags of quiver bench: perf_analyzer-style windows, JSON tensors and open loop when this
# build has them; otherwise the older --duration form (binary tensors only, which MLServer
# cannot read, and no open loop).
if "$quiver" bench --help | grep -q -- --measurement-interval; then
  modern=1
  window=(--warmup "$WARMUP" -p "$INTERVAL_MS" -r "$MAX_TRIALS")
  format=(--input-tensor-format json --output-tensor-format json --input-data "$models/input-data.json")
else
  modern=0
  window=(--warmup "$WARMUP" --duration "$(((INTERVAL_MS + 999) / 1000))")
  format=()
  echo "!!  this quiver bench has no --measurement-interval: using --duration, binary tensors, no open loop" >&2
fi

trap stop_server EXIT

# Starts server $1 on a free port (sets server_pid and url) and waits until the server and the
# model are ready.
start_server() {
  local peer="$1" log="$out/$1.log" http grpc metrics
  http="$(free_port)"
  grpc="$(free_port)"
  case "$peer" in
    quiver)
      "$quiver" serve --model-repository "$models/quiver" --http-address 127.0.0.1 --http-port "$http" \
        --grpc-address 127.0.0.1 --grpc-port "$grpc" >"$log" 2>&1 &
      ;;
    kserve)
      "$venvs/kserve/bin/python" "$here/kserve_model.py" --model_dir "$models/sklearn" --model_name "$MODEL" \
        --http_port "$http" --grpc_port "$grpc" --workers "$KSERVE_WORKERS" >"$log" 2>&1 &
      ;;
    mlserver)
      metrics="$(free_port)"
      (cd "$models/mlserver" && MLSERVER_HOST=127.0.0.1 MLSERVER_HTTP_PORT="$http" MLSERVER_GRPC_PORT="$grpc" \
        MLSERVER_METRICS_PORT="$metrics" MLSERVER_PARALLEL_WORKERS="$MLSERVER_WORKERS" \
        exec "$venvs/mlserver/bin/mlserver" start .) >"$log" 2>&1 &
      ;;
    hello)
      [ -f "$out/metadata.json" ] || { echo "hello needs $out/metadata.json, written when quiver runs" >&2; return 1; }
      "$hello" --port "$http" --metadata "$out/metadata.json" >"$log" 2>&1 &
      ;;
    *) echo "unknown server '$peer'" >&2; return 1 ;;
  esac
  server_pid=$!
  url="127.0.0.1:$http"
  wait_ready "$peer" "$log" "$MODEL"
}

wrk_check() {
  local c="$WRK_CONCURRENCY" jsonl="$out/wrk.jsonl"
  : >"$jsonl"
  if [ "$modern" != 1 ]; then
    echo "    skipped: this quiver bench cannot send JSON tensors" >&2
    return 0
  fi
  echo "    quiver bench, concurrency $c, ${WRK_SECONDS} s window:"
  local saved=("${window[@]}")
  window=(--warmup "$WARMUP" -p "$((WRK_SECONDS * 1000))" -r 1) # one window, as wrk measures
  bench "$jsonl" --concurrency "$c"
  window=("${saved[@]}")
  run_wrk -c "$c" -t "$WRK_THREADS" -d "${WARMUP}s" -s "$here/post.lua" "http://$url/v2/models/$MODEL/infer" >/dev/null
  echo "    wrk -c $c -t $WRK_THREADS -d ${WRK_SECONDS}s (after a ${WARMUP} s wrk warmup):"
  run_wrk -c "$c" -t "$WRK_THREADS" -d "${WRK_SECONDS}s" -s "$here/post.lua" "http://$url/v2/models/$MODEL/infer" \
    >"$out/wrk.txt"
  tail -n 1 "$out/wrk.txt" | tee -a "$jsonl" | "$python" -c '
import json, sys
r = json.load(sys.stdin)
print("    %-16s %9.1f req/s  p50 %8.2f ms  p99 %8.2f ms  errors %d" % ("wrk", r["requests_per_s"],
      r["latency_us"]["p50"] / 1000, r["latency_us"]["p99"] / 1000, r["socket_errors"] + r["non_2xx"]))'
}

levels="${CONCURRENCY//,/ }"
# Results of an earlier run would mix into the summary: start from none.
rm -f "$out"/{quiver,kserve,mlserver,hello,wrk}.jsonl "$out/summary.md"
for peer in $PEERS; do
  echo "==> $peer"
  jsonl="$out/$peer.jsonl"
  : >"$jsonl"
  if ! start_server "$peer"; then
    stop_server
    continue
  fi
  echo "    ready at http://$url (log: $out/$peer.log)"
  if [ "$peer" = quiver ]; then
    curl -sf "http://$url/v2/models/$MODEL" >"$out/metadata.json"
  fi
  for c in $levels; do
    bench "$jsonl" --concurrency "$c"
  done
  if [ "$modern" = 1 ]; then
    bench "$jsonl" --request-rate-range "$RATE" --request-distribution "$DISTRIBUTION"
  fi
  if [ "$peer" = quiver ]; then
    echo "==> wrk cross-check against quiver"
    wrk_check
  fi
  stop_server
done

echo "==> summary (target/compare/summary.md)"
"$venvs/mlserver/bin/python" "$here/summarize.py" "$out" \
  --versions "kserve $kserve_version (workers $KSERVE_WORKERS), mlserver $mlserver_version (parallel_workers $MLSERVER_WORKERS)" \
  | tee "$out/summary.md"
