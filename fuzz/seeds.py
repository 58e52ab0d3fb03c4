"""Writes the seed corpora (fuzz/corpus/<target>/): valid and near-valid inputs for the fixed
models of runtime/src/fuzzing.rs, the e2e tests' request shapes, the repository's config.pbtxt
files and the KServe manifest fixtures. Needs tritonclient (target/pyenv) for the gRPC seeds.

    target/pyenv/bin/python fuzz/seeds.py
"""
import gzip
import hashlib
import json
import pathlib
import struct
import zlib

root = pathlib.Path(__file__).resolve().parent.parent
corpus = root / "fuzz" / "corpus"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def inp(name, shape, datatype, data=None, **params):
    t = {"name": name, "shape": shape, "datatype": datatype}
    if data is not None:
        t["data"] = data
    if params:
        t["parameters"] = params
    return t


# V2 JSON: the batched model (x FP32 [-1,3], t BYTES [-1,1]), the fixed one (x INT32 [2,-1]).
v2 = [
    {"inputs": [inp("x", [1, 3], "FP32", [1, 2, 3]), inp("t", [1], "BYTES", ["a"])]},
    {"id": "r1", "inputs": [inp("x", [2, 3], "FP32", [[1.5, 2, 3], [4, 5, 6e10]]), inp("t", [2, 1], "BYTES", [["a"], ["bc"]])],
     "outputs": [{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}],
     "parameters": {"priority": 1, "timeout": 1000, "binary_data_output": False}},
    {"inputs": [inp("x", [2, 2], "INT32", [1, -2, 3, 2147483647])]},
    {"inputs": [inp("x", [2, 1], "INT32", [[1], [2]])], "outputs": [{"name": "o"}]},
    {"inputs": [inp("text", [2], "BYTES", ["hello", "world"])]},
    {"inputs": [inp(n, [1], dt, v) for n, dt, v in [
        ("b", "BOOL", [True]), ("u8", "UINT8", [255]), ("u16", "UINT16", [1]), ("u32", "UINT32", [1]), ("u64", "UINT64", [18446744073709551615]),
        ("i8", "INT8", [-128]), ("i16", "INT16", [1]), ("i64", "INT64", [-9223372036854775808]), ("f16", "FP16", [0.5]),
        ("bf16", "BF16", [0.5]), ("f64", "FP64", [0.1])]]},
    {"inputs": [inp("x", [1, 3], "FP32", [1, 2, 3], shared_memory_region="r")]},
    {"inputs": [inp("x", [1, 3], "FP32", [1, 2, 3])], "outputs": [{"name": "a", "parameters": {"classification": 2}}]},
]
for body in v2:
    put("v2_json", json.dumps(body))
put("v2_json", '{"inputs":[{"name":"x","shape":[1099511627776],"datatype":"FP32","data":[1]}]}')


def binary(head, tail, flags=4, compress=None):
    head = json.dumps(head).encode()
    body = head + tail
    if compress == "gzip":
        body, flags = gzip.compress(body), flags | 1
    elif compress == "deflate":
        body, flags = zlib.compress(body), flags | 2
    header = str(len(head)).encode() + b"\n" if flags & 4 else b""
    return bytes([flags]) + header + body


f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
i32 = lambda *v: struct.pack(f"<{len(v)}i", *v)
strings = lambda *v: b"".join(struct.pack("<I", len(s)) + s for s in v)
bin_heads = [
    ({"inputs": [inp("x", [1, 3], "FP32", binary_data_size=12), inp("t", [1], "BYTES", binary_data_size=5)]}, f32(1, 2, 3) + strings(b"a")),
    ({"inputs": [inp("x", [2, 2], "INT32", binary_data_size=16)], "parameters": {"binary_data_output": True}}, i32(1, 2, 3, 4)),
    ({"inputs": [inp("x", [1, 3], "FP32", binary_data_size=12), inp("t", [1], "BYTES", ["a"])]}, f32(1, 2, 3)),
    ({"inputs": [inp("text", [2], "BYTES", binary_data_size=13)]}, strings(b"hello", b"") + b"\0"),
]
for head, tail in bin_heads:
    put("v2_binary", binary(head, tail))
    put("v2_binary", binary(head, tail, compress="gzip"))
    put("v2_binary", binary(head, tail, compress="deflate"))
put("v2_binary", binary(v2[0], b"", flags=0))
put("v2_binary", bytes([4]) + b" 12 \n" + b'{"inputs":[]}')

# V1: each fixed model takes instances differently.
for body in [
    {"instances": [[1, 2, 3], [4, 5, 6]]},
    {"inputs": [[1, 2, 3]]},
    {"instances": [{"x": [1, 2, 3], "t": "a"}, {"x": [4, 5, 6], "t": "b"}]},
    {"instances": [[1, 2], [3, 4]]},
    {"instances": ["hello", "world"]},
    {"instances": [{"text": "hi"}]},
    {"instances": [[[1.0, 2.0]], [[3.0, 4.0]]]},
    {"instances": [[1, 2, 3], [4, 5]]},
]:
    put("v1_predict", json.dumps(body))

# OpenAI embeddings.
for body in [
    {"model": "embedding", "input": "hello"},
    {"model": "embedding", "input": ["a", "b", "c"], "encoding_format": "base64"},
    {"model": "embedding", "input": ["a"], "encoding_format": "float", "dimensions": 4},
    {"model": "embedding", "input": [1, 2]},
    {"model": "embedding", "input": []},
]:
    put("openai_embeddings", json.dumps(body))

# gRPC ModelInferRequest messages.
from tritonclient.grpc import service_pb2 as pb  # noqa: E402

def grpc(build):
    r = pb.ModelInferRequest(model_name="m", id="r")
    build(r)
    put("grpc_infer", r.SerializeToString())

def g_raw(r):
    t = r.inputs.add(name="x", datatype="FP32", shape=[1, 3]); r.raw_input_contents.append(f32(1, 2, 3))
    t = r.inputs.add(name="t", datatype="BYTES", shape=[1]); r.raw_input_contents.append(strings(b"a"))
    r.outputs.add(name="a").parameters["binary_data"].bool_param = True
    r.parameters["priority"].uint64_param = 1
    r.parameters["timeout"].int64_param = 100
def g_typed(r):
    t = r.inputs.add(name="x", datatype="INT32", shape=[2, 2]); t.contents.int_contents.extend([1, 2, 3, 4])
def g_types(r):
    for name, dt, field, vals in [("b", "BOOL", "bool_contents", [True]), ("i8", "INT8", "int_contents", [-1]), ("i64", "INT64", "int64_contents", [5]),
                                  ("u16", "UINT16", "uint_contents", [7]), ("u64", "UINT64", "uint64_contents", [9]), ("f", "FP32", "fp32_contents", [0.5]),
                                  ("d", "FP64", "fp64_contents", [0.25]), ("s", "BYTES", "bytes_contents", [b"x"])]:
        t = r.inputs.add(name=name, datatype=dt, shape=[1]); getattr(t.contents, field).extend(vals)
def g_text(r):
    t = r.inputs.add(name="text", datatype="BYTES", shape=[2, 1]); t.contents.bytes_contents.extend([b"hi", b"there"])
def g_shm(r):
    t = r.inputs.add(name="x", datatype="FP32", shape=[1, 3]); t.parameters["shared_memory_region"].string_param = "r"
for build in [g_raw, g_typed, g_types, g_text, g_shm]:
    grpc(build)

# Model configurations.
for path in sorted((root / "deploy" / "models").glob("*/config.pbtxt")):
    put("model_config_pbtxt", path.read_text())
for text in [
    'max_batch_size: 4\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 3 ] } ]\ninput [ { name: "t" data_type: TYPE_STRING dims: [ 1 ] reshape: { shape: [ ] } } ]\noutput [ { name: "a" data_type: TYPE_FP32 dims: [ 2 ] } ]\n',
    'max_batch_size: 8\ndynamic_batching { preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 100 priority_levels: 2 default_priority_level: 1\n  default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 1000 allow_timeout_override: true max_queue_size: 4 }\n  priority_queue_policy { key: 2 value: { max_queue_size: 2 } } preserve_ordering: true }\n',
    'name: "m" backend: "onnxruntime" parameters { key: "max_batch_tokens" value: { string_value: "4096" } }\ninstance_group [ { count: 2 kind: KIND_GPU gpus: [ 0 ] } ]\n# comment\n',
    'max_batch_size: 0\nversion_policy: { specific { versions: [ 1, 3 ] } }\nsequence_batching { }\n',
    'model_warmup [ { name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 3 ] zero_data: true } } } ]\n',
]:
    put("model_config_pbtxt", text)
for cfg in [
    {"max_batch_size": 4, "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}], "output": [{"name": "a", "data_type": "TYPE_FP32", "dims": [2]}]},
    {"name": "m", "platform": "onnxruntime_onnx", "max_batch_size": 8, "dynamic_batching": {"preferred_batch_size": [4], "priority_levels": 3, "default_priority_level": 2}},
    {"parameters": {"max_batch_tokens": {"string_value": "100"}}, "instance_group": [{"count": 1, "kind": "KIND_CPU"}]},
    {"max_batch_size": "4", "version_policy": {"latest": {"num_versions": 2}}, "ensemble_scheduling": {}},
]:
    put("model_config_json", json.dumps(cfg))

# InferenceService manifests.
for path in sorted((root / "control-plane" / "tests" / "fixtures" / "kserve").glob("*.yaml")):
    put("isvc_yaml", path.read_text())
isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "m", "annotations": {"autoscaling.knative.dev/target": "10"}},
        "spec": {"predictor": {"minReplicas": 0, "maxReplicas": 3, "scaleMetric": "rps", "scaleTarget": 5, "timeout": 30, "canaryTrafficPercent": 20,
                               "batcher": {"maxBatchSize": 8, "maxLatency": 50}, "model": {"modelFormat": {"name": "onnx"}, "storageUri": "s3://b/m"}}}}
put("isvc_yaml", json.dumps(isvc))
put("isvc_yaml", json.dumps([isvc, isvc]))
