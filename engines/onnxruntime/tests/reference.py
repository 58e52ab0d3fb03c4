"""Writes the reference cases of the onnxruntime engine's Rust test: every shipped model
(deploy/models) and every e2e drop-in model (tests/e2e/extra_models.py), a sample batch for each,
and what the Python onnxruntime gives for it.

    python reference.py OUT_DIR

OUT_DIR/cases.json lists the cases; tensors are raw little-endian files beside it (BYTES as a JSON
list of strings)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import extra_models  # noqa: E402

DATATYPES = {"f4": "FP32", "f8": "FP64", "i8": "INT64", "i4": "INT32", "b1": "BOOL"}


def deploy_inputs(name: str, rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    shapes = {"mlp": ("input", (16,)), "cnn": ("image", (1, 8, 8)), "iris": ("input", (4,)), "gbm_regressor": ("input", (5,))}
    if name == "int_ops":
        return {"x": rng.integers(-1000, 1000, size=(rows, 4), dtype=np.int64)}
    key, shape = shapes[name]
    return {key: rng.standard_normal((rows, *shape)).astype(np.float32)}


def tensor(out: Path, stem: str, name: str, value: np.ndarray) -> dict:
    entry = {"name": name, "shape": list(value.shape)}
    if value.dtype == np.object_ or value.dtype.kind in "SU":
        entry["datatype"] = "BYTES"
        entry["strings"] = [v.decode() if isinstance(v, bytes) else str(v) for v in value.reshape(-1)]
    else:
        entry["datatype"] = DATATYPES[f"{value.dtype.kind}{value.dtype.itemsize}"]
        entry["file"] = f"{stem}.bin"
        (out / entry["file"]).write_bytes(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes())
    return entry


def case(out: Path, name: str, model: Path, inputs: dict[str, np.ndarray]) -> dict:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feed = {k: (np.array([e.decode() for e in v.reshape(-1)], dtype=object).reshape(v.shape) if v.dtype == np.object_ else v) for k, v in inputs.items()}
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feed)
    return {
        "name": name,
        "model": str(model),
        "inputs": [tensor(out, f"{name}_in{i}", k, v) for i, (k, v) in enumerate(inputs.items())],
        "outputs": [tensor(out, f"{name}_out{i}", k, np.asarray(v)) for i, (k, v) in enumerate(zip(names, results))],
    }


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(16)
    cases = []
    for name in ["mlp", "cnn", "iris", "gbm_regressor", "int_ops"]:
        for rows in (1, 5):
            model = ROOT / "deploy" / "models" / name / "1" / "model.onnx"
            cases.append(case(out, f"{name}_b{rows}", model, deploy_inputs(name, rng, rows)))
    extra = out / "extra"
    models = extra_models.MODELS + [extra_models.STRING_MODEL]
    extra_models.generate(extra, models)
    for m in models:
        inputs = {k: f(rng, m.rows) for k, f in m.inputs.items()}
        cases.append(case(out, m.name, extra / m.name / "1" / "model.onnx", inputs))
    (out / "cases.json").write_text(json.dumps({"cases": cases}, indent=1))


if __name__ == "__main__":
    main()
