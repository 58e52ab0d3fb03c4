#!/usr/bin/env python3
"""Trains the comparison's one model and lays it out for every server.

    target/compare-venv/mlserver/bin/python benches/compare/prepare.py OUT_DIR

A scikit-learn LogisticRegression (16 FP32 features, 3 classes, trained deterministically on a
synthetic set), written as:

- OUT_DIR/sklearn/model.joblib: the fitted estimator, served natively by KServe
  (benches/compare/kserve_model.py) and by MLServer's scikit-learn runtime;
- OUT_DIR/mlserver/{settings.json, logreg/model-settings.json}: MLServer's configuration;
- OUT_DIR/quiver/logreg/{config.pbtxt, 1/model.onnx}: the same fitted estimator converted with
  skl2onnx (ZipMap off) for Quiver;
- OUT_DIR/request.json: one V2 JSON infer request (batch 1), the body wrk sends;
- OUT_DIR/input-data.json: the same row in perf_analyzer's --input-data format, so quiver
  bench sends that same body.

Every server takes input `input` FP32 [-1, 16] and answers one output, the predicted class
(INT64): the ONNX graph's `probabilities` output is dropped so that Quiver returns what
MLServer's `predict` and the KServe model return.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import numpy as np
import onnx
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

MODEL = "logreg"
FEATURES = 16
INPUT = "input"
SEED = 0


def main(out: Path) -> None:
    x, y = make_classification(
        n_samples=2000, n_features=FEATURES, n_informative=8, n_redundant=2, n_classes=3, random_state=SEED
    )
    x = x.astype(np.float32)
    clf = LogisticRegression(max_iter=1000).fit(x, y)

    sk = out / "sklearn"
    sk.mkdir(parents=True, exist_ok=True)
    joblib.dump(clf, sk / "model.joblib")

    onx = to_onnx(
        clf,
        initial_types=[(INPUT, FloatTensorType([None, FEATURES]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 15, "ai.onnx.ml": 3},
    )
    keep = [o for o in onx.graph.output if o.name == "label"]
    del onx.graph.output[:]
    onx.graph.output.extend(keep)
    onnx.checker.check_model(onx, full_check=True)
    version = out / "quiver" / MODEL / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.onnx").write_bytes(onx.SerializeToString())
    # Batching model (batch dimension first), default scheduler: every request runs alone, as
    # in KServe and MLServer (whose adaptive batching is off by default).
    (out / "quiver" / MODEL / "config.pbtxt").write_text(
        f'name: "{MODEL}"\n'
        'platform: "onnxruntime_onnx"\n'
        "max_batch_size: 64\n"
        f'input [ {{ name: "{INPUT}" data_type: TYPE_FP32 dims: [ {FEATURES} ] }} ]\n'
        'output [ { name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape { shape: [ ] } } ]\n'
        "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
    )

    ml = out / "mlserver"
    (ml / MODEL).mkdir(parents=True, exist_ok=True)
    # Ports are set by run.sh through MLSERVER_* environment variables.
    (ml / "settings.json").write_text(json.dumps({"debug": False}, indent=2) + "\n")
    (ml / MODEL / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": str((sk / "model.joblib").resolve())},
                # MLServer serves as metadata what the settings declare (nothing otherwise).
                "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, FEATURES]}],
                "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}],
            },
            indent=2,
        )
        + "\n"
    )

    # The first training row, rounded to eighths: exact in FP32, so quiver bench (which prints
    # FP32 elements as f64) writes the same short numbers as request.json holds.
    row = [round(float(v) * 8) / 8 for v in x[0]]
    (out / "input-data.json").write_text(json.dumps({"data": [{INPUT: row}]}) + "\n")
    # Byte for byte what quiver bench sends: compact, keys sorted (serde_json's map order).
    request = {"inputs": [{"name": INPUT, "shape": [1, FEATURES], "datatype": "FP32", "data": row}]}
    (out / "request.json").write_text(json.dumps(request, separators=(",", ":"), sort_keys=True))
    print(f"prepare: {MODEL} (LogisticRegression, {FEATURES} features, train accuracy {clf.score(x, y):.3f}) in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
