"""Model drop-in: models that are not in deploy/models (scikit-learn, LightGBM, XGBoost converted to
ONNX with ai.onnx.ml operators) are written into the repository before the server starts
(conftest.model_repo); Quiver must serve them and agree with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import extra_models
from conftest import assert_same, require_model

ORT_TO_TRITON = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(string)": "BYTES"}
MODEL_NAMES = [m.name for m in extra_models.MODELS]


def _sample(spec: extra_models.ExtraModel, seed: int, no_nan: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {name: gen(rng, spec.rows) for name, gen in spec.inputs.items()}
    if no_nan:
        arrays = {k: np.nan_to_num(v, nan=0.25) for k, v in arrays.items()}
    return arrays


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_dropin_metadata(http_client, reference, model):
    require_model(model)
    assert http_client.is_model_ready(model)
    md = http_client.get_model_metadata(model)
    s = reference.session(model)
    assert {i["name"]: i["datatype"] for i in md["inputs"]} == {
        i.name: ORT_TO_TRITON[i.type] for i in s.get_inputs()
    }
    assert {o["name"]: o["datatype"] for o in md["outputs"]} == {
        o.name: ORT_TO_TRITON[o.type] for o in s.get_outputs()
    }
    for i in md["inputs"]:
        assert i["shape"][0] == -1 and i["shape"][1:] == list(s.get_inputs()[0].shape[1:])


@pytest.mark.parametrize("mode", ["http-json", "http-binary", "grpc"])
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_dropin_matches_onnxruntime(http_client, grpc_client, reference, model, mode):
    require_model(model)
    spec = extra_models.BY_NAME[model]
    arrays = _sample(spec, seed=len(model), no_nan=(mode == "http-json"))
    ref = reference.run(model, arrays)
    if mode.startswith("http"):
        binary = mode == "http-binary"
        inputs = []
        for name, arr in arrays.items():
            i = httpclient.InferInput(name, list(arr.shape), "FP32")
            i.set_data_from_numpy(arr, binary_data=binary)
            inputs.append(i)
        outputs = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in ref]
        res = http_client.infer(model, inputs, outputs=outputs)
    else:
        inputs = []
        for name, arr in arrays.items():
            i = grpcclient.InferInput(name, list(arr.shape), "FP32")
            i.set_data_from_numpy(arr)
            inputs.append(i)
        res = grpc_client.infer(model, inputs, client_timeout=30)
    for name, expected in ref.items():
        got = res.as_numpy(name)
        assert_same(got, expected, f"{model}.{name}")
    if "probabilities" in ref:
        # A sanity check of the reference itself: rows are distributions, labels their argmax.
        np.testing.assert_allclose(ref["probabilities"].sum(axis=1), 1.0, rtol=1e-4)
        assert (np.argmax(ref["probabilities"], axis=1) == ref["label"]).all()
