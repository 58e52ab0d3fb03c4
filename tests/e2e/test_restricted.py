"""405 for a known path asked with the wrong method, and Triton's restricted APIs
(--http-restricted-api, --grpc-restricted-protocol) on both protocols."""

from __future__ import annotations

import subprocess

import pytest
import requests

from conftest import QUIVER_BIN, QuiverServer, copy_deploy_models

SECRET = "s3cret"


@pytest.fixture(scope="module")
def restricted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("restricted")
    repo = copy_deploy_models(tmp / "models", only=["iris"])
    srv = QuiverServer(repo, tmp / "quiver.log", extra_args=[
        "--model-control-mode", "explicit", "--load-model", "iris",
        "--http-restricted-api", f"model-repository,model-config:Admin-Key={SECRET}",
        "--grpc-restricted-protocol", f"model-repository:admin-key={SECRET}",
    ]).start()
    yield srv
    srv.kill()


WRONG_METHOD = [
    ("DELETE", "/v2", "GET, HEAD"),
    ("POST", "/v2/health/live", "GET, HEAD"),
    ("PUT", "/v2/health/ready", "GET, HEAD"),
    ("POST", "/v2/models/iris", "GET, HEAD"),
    ("POST", "/v2/models/iris/versions/1/ready", "GET, HEAD"),
    ("POST", "/v2/models/iris/config", "GET, HEAD"),
    ("GET", "/v2/models/iris/infer", "POST"),
    ("GET", "/v2/repository/index", "POST"),
    ("GET", "/v2/repository/models/iris/load", "POST"),
    ("DELETE", "/v2/repository/models/iris/traffic", "GET, HEAD, POST"),
    ("GET", "/v2/repository/models/iris/traffic/promote", "POST"),
    ("POST", "/v1/models", "GET, HEAD"),
    ("GET", "/v1/models/iris:predict", "POST"),
    ("GET", "/openai/v1/embeddings", "POST"),
    ("POST", "/metrics", "GET, HEAD"),
]


@pytest.mark.parametrize("method,path,allow", WRONG_METHOD)
def test_wrong_method_is_405_with_allow(restricted, method, path, allow):
    r = requests.request(method, restricted.http_url + path, timeout=10)
    assert r.status_code == 405, (r.status_code, r.text)
    assert r.headers["Allow"] == allow
    assert "not allowed" in r.json()["error"]


@pytest.mark.parametrize("path", ["/nope", "/v2/models", "/v2/models/iris/stats", "/v1/models/iris:explain", "/v2/health"])
def test_unknown_paths_stay_404(restricted, path):
    r = requests.post(restricted.http_url + path, timeout=10)
    assert r.status_code == 404, (r.status_code, r.text)
    assert "error" in r.json()


@pytest.mark.parametrize("method,path", [
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/iris/unload"),
    ("GET", "/v2/repository/models/iris/traffic"),
    ("POST", "/v2/repository/models/iris/traffic/promote"),
    ("GET", "/v2/models/iris/config"),
])
def test_restricted_http_endpoints_need_the_header(restricted, method, path):
    url = restricted.http_url + path
    for headers in ({}, {"admin-key": "wrong"}, {"admin-key": SECRET[:-1]}):
        r = requests.request(method, url, headers=headers, timeout=10)
        assert r.status_code == 403, (headers, r.status_code, r.text)
        assert r.json() == {"error": "This API is restricted, expecting header 'admin-key'"}


def test_restricted_http_with_the_header_and_open_categories(restricted):
    base = restricted.http_url
    ok = {"Admin-Key": SECRET}
    r = requests.post(base + "/v2/repository/index", headers=ok, json={}, timeout=10)
    assert r.status_code == 200 and any(m["name"] == "iris" for m in r.json())
    assert requests.get(base + "/v2/models/iris/config", headers=ok, timeout=10).status_code == 200
    # Categories not restricted answer without it.
    assert requests.get(base + "/v2/health/ready", timeout=10).status_code == 200
    assert requests.get(base + "/v2/models/iris", timeout=10).status_code == 200
    assert requests.get(base + "/metrics", timeout=10).status_code == 200


def test_restricted_grpc_protocol(restricted):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    channel = grpc.insecure_channel(restricted.grpc_addr)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    try:
        with pytest.raises(grpc.RpcError) as e:
            stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "expecting header 'triton-grpc-protocol-admin-key'" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10,
                                 metadata=[("triton-grpc-protocol-admin-key", "wrong")])
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        index = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10,
                                     metadata=[("triton-grpc-protocol-admin-key", SECRET)])
        assert any(m.name == "iris" for m in index.models)
        # Not restricted on gRPC (only HTTP restricts model-config here).
        assert stub.ModelConfig(service_pb2.ModelConfigRequest(name="iris"), timeout=10).config.name == "iris"
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
    finally:
        channel.close()


@pytest.mark.parametrize("flag,value,expected", [
    ("--http-restricted-api", "model-repository", "is not <category>"),
    ("--http-restricted-api", "bogus:k=v", "unknown category 'bogus'"),
    ("--grpc-restricted-protocol", "health:k=", "is not <category>"),
    ("--http-max-header-size", "100", "at least 8192"),
])
def test_bad_flags_name_the_problem(tmp_path, flag, value, expected):
    out = subprocess.run([str(QUIVER_BIN), "serve", "--model-repository", str(tmp_path), flag, value,
                          "--http-port", "0", "--grpc-port", "0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert expected in out.stderr and flag in out.stderr, out.stderr
