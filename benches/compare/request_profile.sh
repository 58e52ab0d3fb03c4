#!/usr/bin/env bash
# Instructions per request of a server on the request path (callgrind), repeatable where
# wall-clock throughput is not (a shared, noisy box). Two runs of the server under valgrind,
# each taking WARMUP requests and the second N more: the difference over N is the Ir of one
# request, server start, model load, warm-up and shutdown cancelling out. The metrics clock's
# start-up calibration (quanta::Clock::new, a loop bounded by time, so of varying length) is
# taken out of both totals.
#
#   QUIVER=target/release/quiver N=2000 CONCURRENCY=8 PYTHON=target/pyenv/bin/python \
#     bash benches/compare/request_profile.sh
#
# HELLO=target/release/hello instead of QUIVER profiles the bare hyper server (it serves
# request_path.sh's metadata.json). The model and its input are request_path.sh's (logreg, V2
# JSON; MODELS=its models folder); callgrind files stay in target/request-profile.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
N="${N:-2000}"
CONCURRENCY="${CONCURRENCY:-1}"
WARMUP="${WARMUP:-200}"
python="${PYTHON:-python3}"
models="${MODELS:-$root/target/request-path/models}"
out="$root/target/request-profile"
mkdir -p "$out"
[ -f "$models/quiver/logreg/1/model.onnx" ] || "$python" benches/compare/prepare.py "$models"

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# N V2 JSON infer requests over CONCURRENCY keep-alive connections.
send() {
  "$python" - "$1" "$2" "$3" "$models/input-data.json" <<'PY'
import http.client, json, sys, threading
port, n, c = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
data = json.load(open(sys.argv[4]))["data"][0]["input"]
body = json.dumps({"inputs": [{"name": "input", "shape": [1, len(data)], "datatype": "FP32", "data": data}]}).encode()
failed = []
def worker(count):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(count):
        conn.request("POST", "/v2/models/logreg/infer", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            failed.append(r.status)
threads = [threading.Thread(target=worker, args=(n // c + (i < n % c),)) for i in range(c)]
[t.start() for t in threads]
[t.join() for t in threads]
sys.exit(f"{len(failed)} requests failed: {failed[:5]}" if failed else 0)
PY
}

# Total Ir of one server run that serves WARMUP + $1 requests, less the clock calibration.
run() {
  local extra="$1" file="$out/callgrind.$CONCURRENCY.$1.out" port grpc pid total calibration
  port="$(free_port)"
  grpc="$(free_port)"
  if [ -n "${HELLO:-}" ]; then
    valgrind --tool=callgrind --callgrind-out-file="$file" "$HELLO" --port "$port" --metadata "${METADATA:-$models/../metadata.json}" \
      >"$out/server.log" 2>&1 &
  else
    valgrind --tool=callgrind --callgrind-out-file="$file" "${QUIVER:?the quiver binary}" serve --model-repository "$models/quiver" \
      --http-address 127.0.0.1 --http-port "$port" --grpc-address 127.0.0.1 --grpc-port "$grpc" >"$out/server.log" 2>&1 &
  fi
  pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/v2/models/logreg/ready" >/dev/null && break; sleep 0.5; done
  send "$port" "$WARMUP" "$CONCURRENCY"
  [ "$extra" -eq 0 ] || send "$port" "$extra" "$CONCURRENCY"
  kill -TERM "$pid"
  wait "$pid" || true
  total="$(grep -m1 '^summary:' "$file" | awk '{print $2}')"
  calibration="$(callgrind_annotate --auto=no --inclusive=yes "$file" 2>/dev/null | grep -m1 'quanta::Clock::new' | awk '{gsub(",", "", $1); print $1}')"
  echo $((total - ${calibration:-0}))
}

base="$(run 0)"
loaded="$(run "$N")"
echo "concurrency $CONCURRENCY: $(((loaded - base) / N)) Ir/request ($N requests; files in $out)"
