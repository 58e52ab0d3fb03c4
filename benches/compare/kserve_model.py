#!/usr/bin/env python3
"""The comparison's model in KServe's Python ModelServer: the fitted scikit-learn estimator
(model.joblib) in a `kserve.Model`, served over V2 REST.

    target/compare-venv/kserve/bin/python benches/compare/kserve_model.py \
        --model_dir target/compare/models/sklearn --model_name logreg \
        --http_port 8080 --grpc_port 8081 --workers 1

Any other ModelServer flag of the installed kserve passes through. The model declares its
metadata (`GET /v2/models/{m}`: input `input` FP32 [-1, 16], output `label` INT64 [-1]) through
`get_input_types`/`get_output_types`, kserve's API for it; kserve.Model's defaults are empty.
Per-request logging is off, as in the other servers (kserve_common.py).
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

import joblib
import numpy as np
from kserve import InferRequest, InferResponse, Model

from kserve_common import parse_args, response, serve

FEATURES = 16


class SklearnModel(Model):
    """Predicts the class of each row of the request's single FP32 input."""

    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.estimator = None
        self.load()

    def load(self) -> bool:
        self.estimator = joblib.load(os.path.join(self.model_dir, "model.joblib"))
        self.ready = True
        return self.ready

    def get_input_types(self) -> List[Dict]:
        return [{"name": "input", "datatype": "FP32", "shape": [-1, FEATURES]}]

    def get_output_types(self) -> List[Dict]:
        return [{"name": "label", "datatype": "INT64", "shape": [-1]}]

    def predict(
        self,
        payload: InferRequest,
        headers: Optional[Dict[str, str]] = None,
        response_headers: Optional[Dict[str, str]] = None,
    ) -> InferResponse:
        rows = payload.inputs[0].as_numpy().reshape(-1, FEATURES)
        labels = self.estimator.predict(rows).astype(np.int64)
        return response(payload, self.name, "label", "INT64", labels)


if __name__ == "__main__":
    args = parse_args(lambda p: p.add_argument("--model_dir", required=True, help="directory holding model.joblib"))
    serve([SklearnModel(args.model_name, args.model_dir)])
