"""Deterministic fuzzing of the REST and gRPC infer endpoints: structurally mutated requests must
get an answer below 500 (a 4xx with a JSON error, or 200), quickly, and never take the server
down."""

from __future__ import annotations

import copy
import json
import random
import struct
import time

import grpc
import numpy as np
import pytest
import requests
from tritonclient.grpc import service_pb2

from conftest import check_good_inference, error_message

POOL = [0, 1, -1, 16, 17, 2**31, 2**32 + 16, 2**63 - 1, -(2**63), 2**64, 1.5, -0.0, 1e308, "",
        "input", "FP32", "BYTES", "INT64", "x" * 300, None, True, False, [], [[]], [1, 16],
        [16], [-1, 16], [0, 16], {}, {"binary_data_size": 64}, {"binary_data": True},
        [[0.5] * 16], [0.5] * 16, ["a"] * 16, [None], 1e-45]

MODELS = {
    "mlp": ("input", "FP32", [2, 16]),
    "iris": ("input", "FP32", [3, 4]),
    "int_ops": ("x", "INT64", [2, 4]),
    "string_identity": ("text", "BYTES", [3]),
    "gbm_regressor": ("input", "FP32", [2, 5]),
}


def _base_request(rng: random.Random, model: str) -> dict:
    name, dt, shape = MODELS[model]
    n = int(np.prod(shape))
    if dt == "FP32":
        data = [round(rng.uniform(-3, 3), 3) for _ in range(n)]
    elif dt == "INT64":
        data = [rng.randint(-1000, 1000) for _ in range(n)]
    else:
        data = [rng.choice(["a", "", "quiver"]) for _ in range(n)]
    return {"id": "f", "inputs": [{"name": name, "shape": list(shape), "datatype": dt, "data": data}],
            "outputs": [], "parameters": {}}


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def _mutate(rng: random.Random, req: dict) -> dict:
    req = copy.deepcopy(req)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(req) if p]
        path = rng.choice(paths)
        action = rng.random()
        try:
            if action < 0.7:
                _set(req, path, copy.deepcopy(rng.choice(POOL)))
            elif action < 0.85:
                parent = req
                for p in path[:-1]:
                    parent = parent[p]
                if isinstance(parent, dict):
                    del parent[path[-1]]
                elif isinstance(parent, list):
                    parent.pop(path[-1])
            else:
                parent = req
                for p in path[:-1]:
                    parent = parent[p]
                if isinstance(parent, dict):
                    parent[rng.choice(["data", "shape", "datatype", "name", "parameters", "extra"])] = \
                        copy.deepcopy(rng.choice(POOL))
        except (IndexError, KeyError, TypeError):
            pass
    if req.get("outputs") == []:
        del req["outputs"]
    return req


def _check(r: requests.Response, t0: float, what) -> None:
    elapsed = time.monotonic() - t0
    assert r.status_code < 500, f"{what}: HTTP {r.status_code} {r.text[:300]}"
    if r.status_code != 200:
        error_message(r)
    assert elapsed < 3, f"{what}: took {elapsed:.1f}s"


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_json_requests(http_url, reference, seed):
    rng = random.Random(seed)
    s = requests.Session()
    codes = {}
    for i in range(120):
        model = rng.choice(list(MODELS))
        req = _mutate(rng, _base_request(rng, model))
        body = json.dumps(req).encode()
        t0 = time.monotonic()
        r = s.post(f"{http_url}/v2/models/{model}/infer", data=body,
                   headers={"Content-Type": "application/json"}, timeout=10)
        _check(r, t0, (model, body[:400]))
        codes[r.status_code] = codes.get(r.status_code, 0) + 1
    s.close()
    assert set(codes) - {200} , codes  # the mutations do produce refusals
    check_good_inference(http_url, reference)


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_binary_requests(http_url, reference, seed):
    rng = random.Random(100 + seed)
    s = requests.Session()
    for i in range(120):
        model = rng.choice(["mlp", "iris", "string_identity", "int_ops"])
        name, dt, shape = MODELS[model]
        n = int(np.prod(shape))
        if dt == "BYTES":
            blob = b"".join(struct.pack("<I", 2) + b"ab" for _ in range(n))
        elif dt == "INT64":
            blob = np.arange(n, dtype=np.int64).tobytes()
        else:
            blob = np.ones(n, np.float32).tobytes()
        inp = {"name": name, "shape": list(shape), "datatype": dt,
               "parameters": {"binary_data_size": len(blob)}}
        head = {"inputs": [inp], "outputs": [{"name": "nope", "parameters": {"binary_data": True}}][:0]}
        kind = rng.randrange(5)
        if kind == 0:
            inp["parameters"]["binary_data_size"] = rng.choice(POOL)
        elif kind == 1:
            inp["shape"] = rng.choice([p for p in POOL if isinstance(p, list)] + [[2**40], [n + 1]])
        elif kind == 2:
            blob = bytearray(blob)
            for _ in range(rng.randint(1, 6)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
            blob = bytes(blob)
        elif kind == 3:
            blob = blob[: rng.randrange(len(blob) + 1)] + bytes(rng.randrange(8))
        else:
            inp["datatype"] = rng.choice(["FP32", "INT64", "BYTES", "UINT8", "BOOL", "FP16", "INT8"])
        h = json.dumps(head).encode()
        hlen = len(h)
        if rng.random() < 0.15:
            hlen = rng.choice([0, hlen - 1, hlen + 1, len(h) + len(blob) + 1, 2**31, -1])
        t0 = time.monotonic()
        r = s.post(f"{http_url}/v2/models/{model}/infer", data=h + blob,
                   headers={"Inference-Header-Content-Length": str(hlen)}, timeout=10)
        _check(r, t0, (model, kind, h[:300], hlen))
    s.close()
    check_good_inference(http_url, reference)


def test_fuzz_grpc_requests(grpc_stub, http_url, reference):
    rng = random.Random(7)
    for i in range(200):
        model = rng.choice(["mlp", "iris", "int_ops", "string_identity"])
        name, dt, shape = MODELS[model]
        req = service_pb2.ModelInferRequest(model_name=model, id=f"f{i}")
        t = req.inputs.add(name=name, datatype=dt, shape=shape)
        n = int(np.prod(shape))
        raw = {"FP32": np.zeros(n, np.float32).tobytes(), "INT64": np.zeros(n, np.int64).tobytes(),
               "BYTES": b"".join(struct.pack("<I", 1) + b"q" for _ in range(n))}[dt]
        kind = rng.randrange(7)
        if kind == 0:
            del t.shape[:]
            t.shape.extend(rng.choice([[], [0], [-5], [2**40], [2**31, 2**31], [n], [1, n, 1]]))
        elif kind == 1:
            t.datatype = rng.choice(["", "FP16", "BF16", "BOOL", "UINT64", "nonsense", "FP32", "BYTES"])
        elif kind == 2:
            raw = raw[: rng.randrange(len(raw) + 1)]
        elif kind == 3:
            raw = bytes(rng.randrange(256) for _ in range(len(raw)))
        elif kind == 4:
            req.outputs.add(name=rng.choice(["", "nope", "label", "probabilities", "y"]))
        elif kind == 5:
            req.inputs.add(name=rng.choice([name, "other"]), datatype=dt, shape=shape)
        else:
            req.model_version = rng.choice(["", "0", "-1", "1", "99999999999999999999", "abc"])
        if rng.random() < 0.9:
            for _ in req.inputs:
                req.raw_input_contents.append(raw)
        t0 = time.monotonic()
        try:
            grpc_stub.ModelInfer(req, timeout=10)
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (
                f"{model} kind {kind}: {e.code()} {e.details()}")
            assert e.details()
        assert time.monotonic() - t0 < 3
    check_good_inference(http_url, reference)
