"""What the comparison's KServe models share (kserve_model.py, kserve_embeddings.py): building a
V2 response from one numpy output, and starting KServe's ModelServer as every comparison runs
it. Per-request logging (kserve's latency and timing trace lines, uvicorn's access log) is
off, as in the other servers, and so is a FastAPI deprecation warning about kserve's
ORJSONResponse that this fastapi version prints on every request.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from typing import Callable, List, Optional

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve import model_server
from kserve.utils.utils import generate_uuid


def response(payload: InferRequest, model_name: str, output_name: str, datatype: str,
             values: np.ndarray) -> InferResponse:
    """The V2 response carrying `values` as the single JSON output `output_name`."""
    output = InferOutput(name=output_name, shape=list(values.shape), datatype=datatype)
    output.set_data_from_numpy(values, binary_data=False)
    return InferResponse(
        response_id=payload.id or generate_uuid(),
        model_name=model_name,
        infer_outputs=[output],
    )


def parse_args(add: Optional[Callable[[argparse.ArgumentParser], None]] = None) -> argparse.Namespace:
    """ModelServer's flags (and any `add` declares); unknown ones pass through to kserve."""
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    if add is not None:
        add(parser)
    args, _ = parser.parse_known_args()
    return args


def serve(models: List[Model]) -> None:
    """Starts KServe's ModelServer on `models`, with per-request logging off."""
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    server = ModelServer(enable_latency_logging=False)
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start(models)
