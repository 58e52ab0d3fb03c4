"""The onnxruntime engine beside tract: a model that asks for onnxruntime runs on it, one forced
to tract runs on tract, one that names neither is raced at load; /config shows the engine; and a
server whose ONNX Runtime library does not load fails only the model that asked for it, with
the reason, while tract serves the rest.

Needs ORT_DYLIB_PATH (tests/run.sh sets it from the venv's onnxruntime wheel)."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
import requests

from conftest import DEPLOY_MODELS, QuiverServer, Reference, assert_same, error_message

pytestmark = pytest.mark.skipif(
    not os.environ.get("ORT_DYLIB_PATH"), reason="ORT_DYLIB_PATH is not set (tests/run.sh sets it)"
)


def _model(repo, name: str, source: str, config: str | None) -> None:
    (repo / name / "1").mkdir(parents=True)
    shutil.copy(DEPLOY_MODELS / source / "1" / "model.onnx", repo / name / "1" / "model.onnx")
    if config is not None:
        (repo / name / "config.pbtxt").write_text(config)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("ort") / "models"
    _model(repo, "mlp_ort", "mlp", 'backend: "onnxruntime"\nmax_batch_size: 8\n')
    _model(repo, "cnn_tract", "cnn", 'backend: "tract"\nmax_batch_size: 8\n')
    _model(repo, "cnn_platform", "cnn", 'platform: "onnxruntime_onnx"\nmax_batch_size: 8\n')
    _model(repo, "iris_auto", "iris", None)
    _model(repo, "cnn_auto", "cnn", None)
    return repo


def _config(srv, name: str) -> dict:
    r = requests.get(f"{srv.http_url}/v2/models/{name}/config", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _infer(srv, name: str, input_name: str, x: np.ndarray) -> dict:
    body = {"inputs": [{"name": input_name, "shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1).tolist()}]}
    r = requests.post(f"{srv.http_url}/v2/models/{name}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}


def _check(srv, reference: Reference, name: str, input_name: str, x: np.ndarray) -> None:
    got = _infer(srv, name, input_name, x)
    want = reference.run(name, {input_name: x})
    for k, v in want.items():
        # Auto-complete gives a rank-1 batched output dims [1] (as Triton does): compare values.
        assert_same(got[k].astype(v.dtype).reshape(v.shape), v, f"{name}/{k}")


def test_engines_chosen_per_config_and_shown_in_config(repo, tmp_path):
    srv = QuiverServer(repo, tmp_path / "quiver.log").start()
    try:
        assert _config(srv, "mlp_ort")["backend"] == "onnxruntime"
        assert _config(srv, "cnn_tract")["backend"] == "tract"
        platform = _config(srv, "cnn_platform")
        assert (platform["platform"], platform["backend"]) == ("onnxruntime_onnx", "onnxruntime")
        for name in ("iris_auto", "cnn_auto"):
            cfg = _config(srv, name)
            assert cfg["platform"] == "onnxruntime_onnx" and cfg["backend"] in ("onnxruntime", "tract"), cfg
            # The race is logged with both engines' times.
            assert re.search(rf"engine choice: {cfg['backend']} \(.*onnxruntime [\d.]+ ms.*tract [\d.]+ ms\).*{name}/1/model.onnx", srv.log()), srv.log_tail()
        meta = requests.get(f"{srv.http_url}/v2/models/mlp_ort", timeout=10).json()
        assert meta["platform"] == "onnxruntime_onnx"

        rng = np.random.default_rng(3)
        reference = Reference(repo)
        _check(srv, reference, "mlp_ort", "input", rng.standard_normal((5, 16)).astype(np.float32))
        for name in ("cnn_tract", "cnn_platform", "cnn_auto"):
            _check(srv, reference, name, "image", rng.standard_normal((3, 1, 8, 8)).astype(np.float32))
        _check(srv, reference, "iris_auto", "input", rng.standard_normal((4, 4)).astype(np.float32))
    finally:
        srv.terminate()


def test_library_not_available_fails_only_the_model_that_asks_for_it(repo, tmp_path, monkeypatch):
    not_a_library = tmp_path / "libonnxruntime.so"
    not_a_library.write_text("this is not a shared library\n")
    monkeypatch.setenv("ORT_DYLIB_PATH", str(not_a_library))
    others = ["cnn_tract", "cnn_platform", "iris_auto", "cnn_auto"]
    args = ["--model-control-mode", "explicit"] + [a for m in others for a in ("--load-model", m)]
    srv = QuiverServer(repo, tmp_path / "quiver.log", args).start()
    try:
        r = requests.post(f"{srv.http_url}/v2/repository/models/mlp_ort/load", json={}, timeout=30)
        assert r.status_code >= 400, r.text
        assert "onnxruntime not available" in error_message(r) and str(not_a_library) in error_message(r), r.text
        index = requests.post(f"{srv.http_url}/v2/repository/index", json={}, timeout=10).json()
        row = next(m for m in index if m["name"] == "mlp_ort")
        assert row["state"] == "UNAVAILABLE" and "onnxruntime not available" in row.get("reason", ""), row
        # Everything else runs on tract: the platform-only model with a warning, the unnamed
        # ones without a race.
        for name in others:
            assert _config(srv, name)["backend"] == "tract", name
        assert "onnxruntime not available" in srv.log() and "tract serves it instead" in srv.log()
        reference = Reference(repo)
        x = np.random.default_rng(4).standard_normal((2, 1, 8, 8)).astype(np.float32)
        for name in ("cnn_tract", "cnn_platform", "cnn_auto"):
            _check(srv, reference, name, "image", x)
    finally:
        srv.terminate()
