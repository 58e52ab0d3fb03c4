"""Compressed request bodies, as tritonclient sends them with request_compression_algorithm."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

from conftest import assert_same, mlp_batch


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_request(http_client, reference, algorithm):
    x = mlp_batch(3)
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    result = http_client.infer("mlp", [inp], model_version="1", request_compression_algorithm=algorithm)
    expected = reference.run("mlp", {"input": x}, version=1)
    assert_same(result.as_numpy("probabilities"), expected["probabilities"], "probabilities")


def test_gzip_json_body_with_raw_http(http_url, reference):
    x = mlp_batch(2)
    body = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.flatten().tolist()}]}).encode()
    r = requests.post(f"{http_url}/v2/models/mlp/versions/1/infer", data=gzip.compress(body),
                      headers={"Content-Encoding": "gzip"}, timeout=10)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    expected = reference.run("mlp", {"input": x}, version=1)["probabilities"]
    assert_same(np.array(out["data"], dtype=np.float32).reshape(out["shape"]), expected, "probabilities")


def test_unsupported_or_corrupt_encoding_is_400(http_url, http_client):
    body = b'{"inputs": []}'
    r = requests.post(f"{http_url}/v2/models/mlp/infer", data=body, headers={"Content-Encoding": "br"}, timeout=10)
    assert r.status_code == 400 and "Content-Encoding" in r.json()["error"]
    r = requests.post(f"{http_url}/v2/models/mlp/infer", data=body, headers={"Content-Encoding": "gzip"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]
    assert http_client.is_server_ready()


def test_decompression_bomb_is_413(http_url):
    # About 100 KiB compressed that expands to 128 MiB, past the 64 MiB default limit.
    bomb = gzip.compress(b"\0" * (128 << 20), compresslevel=9)
    r = requests.post(f"{http_url}/v2/models/mlp/infer", data=bomb, headers={"Content-Encoding": "gzip"}, timeout=30)
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["error"]
