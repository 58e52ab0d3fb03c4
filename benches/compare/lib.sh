# Shell functions shared by the comparison scripts (run.sh, embeddings.sh); sourced, not run.
# They expect `python` (a Python 3 for small helpers) to be set, and keep the server they
# started in the global `server_pid`.

# Creates (or refreshes) venv $1 from requirements file $2; re-installs only when $2 changed.
make_venv() {
  local venv="$1" req="$2" want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -f "$venv/.requirements.sha256" ] && [ "$(cat "$venv/.requirements.sha256")" = "$want" ]; then
    return
  fi
  echo "    installing $(basename "$req") into $venv"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$venv/.requirements.sha256"
}

# A free TCP port on 127.0.0.1.
free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

server_pid=""
# Stops the server in $server_pid: SIGTERM, then SIGKILL after 30 s.
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    echo "    still running after 30 s; SIGKILL" >&2
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# Waits until the server in $server_pid (peer $1, log $2) at $url says it and model $3 are
# ready (V2 health endpoints), for at most $4 seconds (default 120).
wait_ready() {
  local peer="$1" log="$2" model="$3" limit="${4:-120}"
  for _ in $(seq 1 $((limit * 10))); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "$peer exited before it was ready; its log ($log):" >&2
      tail -n 30 "$log" >&2
      server_pid=""
      return 1
    fi
    if curl -sf "http://$url/v2/health/ready" >/dev/null && curl -sf "http://$url/v2/models/$model/ready" >/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$peer was not ready within $limit s; its log ($log):" >&2
  tail -n 30 "$log" >&2
  return 1
}

# One quiver bench level against model $MODEL at $url with the flags in the arrays `window` and
# `format` and the rest of the arguments; appends the JSON line to $1, prints a summary of it.
# The binary is $quiver; its stderr goes to $out/bench.err.
bench() {
  local jsonl="$1" before
  shift
  before="$(wc -l <"$jsonl")"
  if ! "$quiver" bench -m "$MODEL" -u "$url" "${window[@]}" "${format[@]}" --json "$@" >>"$jsonl" 2>"$out/bench.err"; then
    echo "    quiver bench $* failed:" >&2
    sed 's/^/      /' "$out/bench.err" >&2
    return 0
  fi
  grep -v -e '^quiver bench: model' -e 'no Triton metrics' "$out/bench.err" | sed 's/^/    /' >&2 || true
  tail -n "+$((before + 1))" "$jsonl" | "$python" -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    lat = r["latency_us"]
    level = "rate %s/s" % r["request_rate"] if r.get("request_rate") is not None else "concurrency %s" % r["concurrency"]
    print("    %-16s %9.1f req/s  p50 %8.2f ms  p99 %8.2f ms  errors %d%s" % (level, r["requests_per_s"],
          lat["p50"] / 1000, lat["p99"] / 1000, sum(r["errors"].values()), "  (unstable)" if r.get("stable") is False else ""))'
}
