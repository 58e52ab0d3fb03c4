#!/usr/bin/env python3
"""The comparison's model in KServe's Python ModelServer: the fitted scikit-learn estimator
(model.joblib) in a `kserve.Model`, served over V2 REST.

    target/compare-venv/kserve/bin/python benches/compare/kserve_model.py \
        --model_dir target/compare/models/sklearn --model_name logreg \
        --http_port 8080 --grpc_port 8081 --workers 1

Any other ModelServer flag of the installed kserve passes through. The model declares its
metadata (`GET /v2/models/{m}`: input `input` FP32 [-1, 16], output `label` INT64 [-1]) through
`get_input_types`/`get_output_types`, kserve's API for it; kserve.Model's defaults are empty.
Per-request logging (kserve's latency and timing trace lines, uvicorn's access log) is turned
off, as in the other servers, and so is a FastAPI deprecation warning about kserve's
ORJSONResponse that this fastapi version prints on every request.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from typing import Dict, List, Optional

import joblib
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve import model_server
from kserve.utils.utils import generate_uuid

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
        output = InferOutput(name="label", shape=list(labels.shape), datatype="INT64")
        output.set_data_from_numpy(labels, binary_data=False)
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=[output],
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", required=True, help="directory holding model.joblib")
    args, _ = parser.parse_known_args()
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    server = ModelServer(enable_latency_logging=False)
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([SklearnModel(args.model_name, args.model_dir)])
