"""Bad model files and path escapes, end to end.

A repository holds one good model beside many broken ones (truncated, random and hostile ONNX,
a safetensors header that claims 100 GB, invalid tokenizer.json and config.json, hostile
config.pbtxt files, file names and symlinks that lead out of the repository). The good model
serves; each broken one is UNAVAILABLE in the index with its reason, which the log also shows;
loading it again through the repository API answers 400 with the reason and leaves the good
model serving; the server never crashes and its RSS does not jump. Model names that try to
leave the repository (`..`, percent-encoded and double-encoded, backslashes, NUL) get 400/404
over raw HTTP, never 500 and never a load."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import struct
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto, helper

from conftest import DEPLOY_MODELS, QuiverServer, json_infer_body, mlp_batch

MLP_CONFIG = (DEPLOY_MODELS / "mlp" / "config.pbtxt").read_text()

TOKENIZER_JSON = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
    "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                   "strip_accents": None, "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": None, "decoder": None,
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
              "max_input_chars_per_word": 100,
              "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4}},
}
BERT_CONFIG = {
    "model_type": "bert", "vocab_size": 5, "hidden_size": 8, "num_hidden_layers": 1,
    "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
    "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
}


def mlp_onnx() -> bytes:
    return (DEPLOY_MODELS / "mlp" / "1" / "model.onnx").read_bytes()


def add_model(w: TensorProto, extra_nodes=()) -> bytes:
    """y = x + w, x and y FP32 [N, 2]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"]), *extra_nodes], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def claiming_tensor(dims, raw: bytes = b"\0" * 8) -> TensorProto:
    t = TensorProto(name="w", data_type=TensorProto.FLOAT)
    t.dims.extend(dims)
    t.raw_data = raw
    return t


def external_tensor(location: str, offset: int = 0, length: int | None = None) -> TensorProto:
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, data_location=TensorProto.EXTERNAL)
    t.dims.extend([2])
    for k, v in [("location", location), ("offset", str(offset))] + ([("length", str(length))] if length is not None else []):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def safetensors_claiming(gigabytes: int) -> bytes:
    n = gigabytes * 1_000_000_000
    header = json.dumps({"w": {"dtype": "F32", "shape": [n // 4], "data_offsets": [0, n]}}).encode()
    return struct.pack("<Q", len(header)) + header


def write_model(repo: Path, name: str, files: dict[str, bytes | str], config: str | None = None) -> None:
    for rel, content in files.items():
        path = repo / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    if config is not None:
        (repo / name).mkdir(parents=True, exist_ok=True)
        (repo / name / "config.pbtxt").write_text(config)


def mlp_config(name: str, replace: tuple[str, str] | None = None, extra: str = "") -> str:
    text = MLP_CONFIG.replace('name: "mlp"', f'name: "{name}"')
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    return text + extra


# name -> (what the reason must say: substrings, any of which matches)
BROKEN: dict[str, tuple[str, ...]] = {}


def build_repository(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    outside = root / "outside"
    outside.mkdir()
    good = mlp_onnx()
    shutil.copytree(DEPLOY_MODELS / "mlp", repo / "good")
    # No name in the config, so the symlink to it below may serve it under its own name.
    (repo / "good" / "config.pbtxt").write_text(MLP_CONFIG.replace('name: "mlp"', ""))

    def broken(name, reason, files, config=None):
        write_model(repo, name, files, config)
        BROKEN[name] = reason if isinstance(reason, tuple) else (reason,)

    # ONNX: truncated at several offsets, random bytes, a valid start then garbage.
    for cut in (7, len(good) // 3, len(good) - 5):
        broken(f"truncated_{cut}", ("failed to load model", "not an ONNX model"), {"1/model.onnx": good[:cut]})
    rng = np.random.default_rng(15)
    broken("random_bytes", "failed to load model", {"1/model.onnx": rng.bytes(4096)})
    broken("garbage_tail", "failed to load model", {"1/model.onnx": good[: len(good) // 2] + rng.bytes(2048)})
    # ONNX tensors that claim 100 GB, negative or overflowing dims, external data outside.
    broken("onnx_100gb", "need 100000000000 bytes, the data holds 8", {"1/model.onnx": add_model(claiming_tensor([25_000, 1_000_000]))})
    broken("onnx_negative_dim", "negative dimension", {"1/model.onnx": add_model(claiming_tensor([-2]))})
    broken("onnx_overflow", "more elements than fit", {"1/model.onnx": add_model(claiming_tensor([2**62, 2**62]))})
    # A few bytes of constants that ask an engine for terabytes while it folds the graph.
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1_000_000, 1_000_000])
    broken("onnx_constant_of_shape_4tb", "node 'zeros' (ConstantOfShape)",
           {"1/model.onnx": add_model(claiming_tensor([2]), [
               helper.make_node("Constant", [], ["shape"], value=shape),
               helper.make_node("ConstantOfShape", ["shape"], ["z"], name="zeros")])})
    bounds = [helper.make_node("Constant", [], [n], value=helper.make_tensor(n, TensorProto.INT64, [], [v]))
              for n, v in (("start", 0), ("limit", 10**12), ("delta", 1))]
    broken("onnx_range_8tb", "node 'r' (Range)",
           {"1/model.onnx": add_model(claiming_tensor([2]), [*bounds, helper.make_node("Range", ["start", "limit", "delta"], ["r"], name="r")])})
    (outside / "w.bin").write_bytes(b"\0" * 8)
    broken("onnx_external_dotdot", "relative path inside", {"1/model.onnx": add_model(external_tensor("../../../outside/w.bin"))})
    broken("onnx_external_absolute", "relative path inside", {"1/model.onnx": add_model(external_tensor(str(outside / "w.bin")))})
    broken("onnx_external_huge", "past the end",
           {"1/model.onnx": add_model(external_tensor("w.bin", 0, 100_000_000_000)), "1/w.bin": b"\0" * 8})
    # Hugging Face: a safetensors header claiming 100 GB, an invalid tokenizer and config.
    hf = {"1/config.json": json.dumps(BERT_CONFIG), "1/tokenizer.json": json.dumps(TOKENIZER_JSON)}
    broken("st_100gb", "header claims", {**hf, "1/model.safetensors": struct.pack("<Q", 100_000_000_000) + b"{}"})
    broken("st_offsets", "lie outside", {**hf, "1/model.safetensors": safetensors_claiming(100)})
    broken("bad_tokenizer", "tokenizer.json",
           {**hf, "1/tokenizer.json": '{"model": {"type": "WordPiece", "vocab": 7}}', "1/model.safetensors": safetensors_claiming(1)})
    broken("bad_bert_config", "config.json", {**hf, "1/config.json": "{ not json", "1/model.safetensors": safetensors_claiming(1)})
    # config.pbtxt: garbage, wrong types, unknown fields, absurd values, deep nesting.
    onnx_files = {"1/model.onnx": good}
    broken("pbtxt_garbage", "config.pbtxt", onnx_files, "\x00\xff{{{ not a config")
    broken("pbtxt_wrong_type", "config.pbtxt", onnx_files, mlp_config("pbtxt_wrong_type", ("max_batch_size: 8", 'max_batch_size: "eight"')))
    broken("pbtxt_unknown_field", "config.pbtxt", onnx_files, mlp_config("pbtxt_unknown_field", extra="\nno_such_field: 1\n"))
    broken("pbtxt_negative_dims", ("dims", "shape", "-5"), onnx_files, mlp_config("pbtxt_negative_dims", ("dims: [ 16 ]", "dims: [ -5 ]")))
    broken("pbtxt_huge_dims", ("dims", "shape"), onnx_files,
           mlp_config("pbtxt_huge_dims", ("dims: [ 16 ]", "dims: [ 9223372036854775807, 9223372036854775807 ]")))
    broken("pbtxt_absurd_batch", ("max_batch_size", "batch"), onnx_files,
           mlp_config("pbtxt_absurd_batch", ("max_batch_size: 8", "max_batch_size: -2147483648")))
    broken("pbtxt_nested", "config.pbtxt", onnx_files, "dynamic_batching { " * 5000 + "}" * 5000)
    broken("pbtxt_huge_warmup", "too large", onnx_files, mlp_config("pbtxt_huge_warmup", extra=(
        '\nmodel_warmup [{ name: "w" batch_size: 8 inputs { key: "input" value: '
        '{ data_type: TYPE_FP32 dims: [ 1000000000000 ] zero_data: true } } }]\n')))
    # File names in the config that lead out of the model directory.
    broken("escape_filename", "default_model_filename", onnx_files,
           mlp_config("escape_filename", extra='\ndefault_model_filename: "../../good/1/model.onnx"\n'))
    broken("escape_filename_abs", "default_model_filename", onnx_files,
           mlp_config("escape_filename_abs", extra=f'\ndefault_model_filename: "{repo / "good" / "1" / "model.onnx"}"\n'))
    broken("escape_warmup", "input_data_file", onnx_files, mlp_config("escape_warmup", extra=(
        '\nmodel_warmup [{ name: "w" batch_size: 1 inputs { key: "input" value: '
        '{ data_type: TYPE_FP32 dims: [ 16 ] input_data_file: "../../../../../../etc/passwd" } } }]\n')))
    # Symlinks that lead out of the repository: a model directory, a version, a file.
    shutil.copytree(DEPLOY_MODELS / "mlp", outside / "mlp")
    (repo / "link_model").symlink_to(outside / "mlp")
    BROKEN["link_model"] = ("outside the model repository",)
    write_model(repo, "link_file", {}, mlp_config("link_file"))
    (repo / "link_file" / "1").mkdir()
    (repo / "link_file" / "1" / "model.onnx").symlink_to(outside / "mlp" / "1" / "model.onnx")
    BROKEN["link_file"] = ("outside the model repository",)
    # A symlink that stays inside the repository is followed.
    (repo / "link_inside").symlink_to(repo / "good")
    return repo


def start(repo: Path, log: Path) -> QuiverServer:
    srv = QuiverServer(repo, log, ["--model-control-mode", "explicit", "--load-model", "*"])
    srv.spawn()
    srv.wait_listening(60)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = requests.post(srv.http_url + "/v2/repository/index", json={}, timeout=5).json()
        if rows and all(r["state"] != "LOADING" for r in rows):
            return srv
        time.sleep(0.2)
    srv.kill()
    pytest.fail(f"models still loading after 120 s:\n{srv.log_tail()}")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def raw_request(addr: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """Sends `path` byte for byte (no client normalizes `..` or re-encodes anything)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        s.sendall(head.encode("latin-1") + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[-1]


def good_inference(srv) -> None:
    r = requests.post(srv.http_url + "/v2/models/good/infer", json=json_infer_body("input", mlp_batch(2)), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"] == [2, 4]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_models")
    repo = build_repository(root)
    srv = start(repo, root / "quiver.log")
    yield srv
    alive = srv.proc.poll() is None
    rc = srv.terminate()
    assert alive, f"quiver died (exit {srv.proc.returncode}):\n{srv.log_tail()}"
    assert rc == 0, f"quiver did not exit 0 on SIGTERM (rc={rc}):\n{srv.log_tail()}"


def test_the_good_model_serves_and_each_broken_one_shows_its_reason(server):
    good_inference(server)
    rows = requests.post(server.http_url + "/v2/repository/index", json={}, timeout=5).json()
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    assert {r["state"] for r in by_name["good"]} == {"READY"}
    assert {r["state"] for r in by_name["link_inside"]} == {"READY"}, by_name["link_inside"]
    log = server.log()
    for name, expected in BROKEN.items():
        states = by_name.get(name)
        assert states, f"{name} is not in the index"
        assert all(r["state"] == "UNAVAILABLE" for r in states), (name, states)
        reason = " ".join(r.get("reason", "") for r in states)
        assert any(e in reason for e in expected), f"{name}: reason {reason!r} does not say {expected}"
        assert any(name in line and any(e in line for e in expected) for line in log.splitlines()), f"{name}: not in the log"
        r = requests.get(server.http_url + f"/v2/models/{name}/ready", timeout=5)
        assert r.status_code != 200, name
    # Nothing claimed by a file was allocated: the whole run stays far below one claimed GB.
    assert rss_kb(server.proc.pid) < 1_000_000, f"peak RSS {rss_kb(server.proc.pid)} kB"


def test_loading_a_broken_model_again_is_a_400_with_the_reason(server):
    before = rss_kb(server.proc.pid)
    for name, expected in BROKEN.items():
        r = requests.post(server.http_url + f"/v2/repository/models/{name}/load", timeout=60)
        assert r.status_code == 400, f"{name}: {r.status_code} {r.text[:300]}"
        error = r.json()["error"]
        assert any(e in error for e in expected), f"{name}: {error!r}"
        good_inference(server)
    assert rss_kb(server.proc.pid) - before < 200_000, "peak RSS grew by more than 200 MB"
    rows = requests.post(server.http_url + "/v2/repository/index", json={"ready": True}, timeout=5).json()
    assert {"good", "link_inside"} <= {r["name"] for r in rows}


# Raw request paths that try to name something outside the repository. Each must be refused
# with 400 or 404; none may load anything or answer 500.
ESCAPES = [
    "/v2/repository/models/../load",
    "/v2/repository/models/%2e%2e/load",
    "/v2/repository/models/%2E%2E/load",
    "/v2/repository/models/..%2f..%2fetc/load",
    "/v2/repository/models/%2e%2e%2foutside%2fmlp/load",
    "/v2/repository/models/%252e%252e/load",
    "/v2/repository/models/%252e%252e%252foutside/load",
    "/v2/repository/models/..%5c..%5coutside/load",
    "/v2/repository/models/good%00/load",
    "/v2/repository/models/%2fetc/load",
    "/v2/repository/models/.hidden/load",
    "/v2/repository/models/../unload",
    "/v2/repository/models/%2e%2e%2fgood/unload",
    "/v2/repository/models/link_model/load",
    "/v2/models/../good/infer",
    "/v2/models/%2e%2e%2fgood/infer",
    "/v2/models/%2e%2e/config",
    "/v2/models/..%2f..%2fetc%2fpasswd",
    "/v2/models/good/versions/..%2f1/infer",
    "/v2/models/good/versions/%2e%2e/ready",
    "/v1/models/%2e%2e%2fgood:predict",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_paths_that_escape_the_repository_are_refused(server, path):
    method = "GET" if path.endswith(("/config", "/ready", "passwd")) else "POST"
    body = json.dumps(json_infer_body("input", mlp_batch(1))).encode() if path.endswith(("infer", "predict")) else b""
    status, text = raw_request(server.http_addr, method, path, body)
    assert status in (400, 404), f"{path}: {status} {text[:300]!r}"
    assert b"error" in text, text
    good_inference(server)
    names = {r["name"] for r in requests.post(server.http_url + "/v2/repository/index", json={"ready": True}, timeout=5).json()}
    assert names == {"good", "link_inside"}, names
