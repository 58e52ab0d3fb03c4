#!/usr/bin/env bash
# Idle footprint of `quiver serve` with one small model (deploy/models/iris), over repeated starts.
#
#   bash benches/reliability/idle_rss.sh [BIN ...]      (default: target/release/quiver)
#
# Each start: the binary is first dropped from the page cache (posix_fadvise DONTNEED), so every
# start finds the same cache state; then `quiver serve`, one readiness request, 2 s of idle, and
# /proc/PID/status is read: VmRSS, RssAnon (heap, stacks, relocated data), RssFile (binary pages),
# threads. Several binaries are measured alternately, so machine noise falls on each alike.
# With WARM=1 the cache is left as it is (what a start right after a build sees).
# `resident.py PID BIN` breaks a running process's resident binary pages down by ELF section and
# by crate.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
starts="${STARTS:-7}"
bins=("$@"); [ ${#bins[@]} -eq 0 ] && bins=("$root/target/release/quiver")
repo="$(mktemp -d)"; trap 'rm -rf "$repo"' EXIT
cp -r "$root/deploy/models/iris" "$repo/"
port=$((20000 + RANDOM % 20000))
declare -A results
for i in $(seq "$starts"); do
  for bin in "${bins[@]}"; do
    [ "${WARM:-0}" = 1 ] || python3 -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$bin"
    "$bin" serve --model-repository "$repo" --http-port "$port" --grpc-port $((port + 1)) >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 200); do curl -sf "localhost:$port/v2/health/ready" >/dev/null && break; sleep 0.05; done
    sleep 2
    read -r rss anon file < <(awk '/^VmRSS/{r=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} END{print r, a, f}' "/proc/$pid/status")
    threads=$(ls "/proc/$pid/task" | wc -l)
    echo "$bin start $i: rss ${rss} kB, anon ${anon} kB, file ${file} kB, threads ${threads}"
    results[$bin]+="$rss "
    kill "$pid"; wait "$pid" 2>/dev/null || true
    port=$((port + 2))
  done
done
for bin in "${bins[@]}"; do
  echo "${results[$bin]}" | tr ' ' '\n' | grep . | sort -n | awk -v b="$bin" '{v[NR]=$1} END{printf "%s: min %.1f MB, median %.1f MB, max %.1f MB over %d starts\n", b, v[1]/1024, v[int((NR+1)/2)]/1024, v[NR]/1024, NR}'
done
