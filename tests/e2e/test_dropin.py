"""Model drop-in: models that are not in deploy/models (scikit-learn, LightGBM, XGBoost converted to
ONNX with ai.onnx.ml operators) are written into the repository before the server starts
(conftest.model_repo); Quiver must serve them and agree with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import extra_models
from conftest import QuiverServer, assert_same, require_model

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
    # Output shapes: the config's dims (plus the batch dim) are what the API exposes.
    cfg = http_client.get_model_config(model)
    for o in md["outputs"]:
        dims = [int(d) for d in {c["name"]: c for c in cfg["output"]}[o["name"]]["dims"]]
        assert o["shape"] == ([-1] + dims if cfg["max_batch_size"] > 0 else dims), (o, dims)


def _api_shapes(http_client, model: str, ref: dict, rows: int) -> dict:
    """The shape each output has in a response: onnxruntime's, unless the config reshapes it
    (Triton: `dims` is the shape the API uses, `reshape` the model's own)."""
    cfg = http_client.get_model_config(model)
    shapes = {}
    for o in cfg["output"]:
        if "reshape" in o:
            dims = [int(d) for d in o["dims"]]
            shapes[o["name"]] = tuple(([rows] if cfg["max_batch_size"] > 0 else []) + dims)
        else:
            shapes[o["name"]] = ref[o["name"]].shape
    return shapes


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
    shapes = _api_shapes(http_client, model, ref, spec.rows)
    for name, expected in ref.items():
        got = res.as_numpy(name)
        assert_same(got, expected.reshape(shapes[name]), f"{model}.{name}")
    if "probabilities" in ref:
        # A sanity check of the reference itself: rows are distributions, labels their argmax.
        np.testing.assert_allclose(ref["probabilities"].sum(axis=1), 1.0, rtol=1e-4)
        assert (np.argmax(ref["probabilities"], axis=1) == ref["label"]).all()


def test_triton_reshape_config(tmp_path, reference_for_repo):
    """A config.pbtxt as Triton's onnxruntime backend writes it for a classifier whose label output
    has shape [batch]: `dims: [1]` with `reshape: { shape: [] }`. Triton serves the label as
    [batch, 1] (dims is the API's shape, reshape the model's). Repositories copied from Triton
    carry such configs."""
    spec = extra_models.RESHAPE_MODEL
    repo = tmp_path / "models"
    extra_models.generate(repo, [spec])
    srv = QuiverServer(repo, tmp_path / "quiver.log")
    try:
        srv.start(timeout=15)
        c = httpclient.InferenceServerClient(url=srv.http_addr)
        md = c.get_model_metadata(spec.name)
        assert {o["name"]: o["shape"] for o in md["outputs"]} == {
            "label": [-1, 1], "probabilities": [-1, 3]}
        x = _sample(spec, seed=1)["input"]
        ref = reference_for_repo(repo).run(spec.name, {"input": x})
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        res = c.infer(spec.name, [inp])
        assert_same(res.as_numpy("label"), ref["label"].reshape(-1, 1), "label")
        assert_same(res.as_numpy("probabilities"), ref["probabilities"], "probabilities")
        c.close()
        assert srv.terminate() == 0
    finally:
        srv.kill()
