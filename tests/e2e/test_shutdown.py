"""Graceful shutdown: requests in flight when SIGTERM arrives complete; then the process exits 0."""

from __future__ import annotations

import http.client
import json
import signal
import time

import numpy as np
import pytest

from conftest import QuiverServer, assert_same, copy_deploy_models, dumps_compact, mlp_batch


@pytest.fixture
def lone_server(tmp_path):
    repo = copy_deploy_models(tmp_path / "models", only=["mlp", "iris"])
    srv = QuiverServer(repo, tmp_path / "quiver.log")
    srv.start()
    yield srv
    srv.kill()


def _start_request(srv, i: int):
    """Opens a connection, sends the headers (with `Expect: 100-continue`) and half of an
    inference body once the server has answered `100 Continue`, and returns (connection, rest of
    the body, input, version)."""
    x = mlp_batch(1 + i % 8, seed=200 + i)
    version = "1" if i % 2 else "2"
    path = f"/v2/models/mlp/versions/{version}/infer"
    if i % 3 == 0:  # binary tensor extension
        head = dumps_compact({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                          "parameters": {"binary_data_size": x.nbytes}}]})
        body = head + x.tobytes()
        headers = {"Inference-Header-Content-Length": str(len(head)),
                   "Content-Type": "application/octet-stream"}
    else:
        body = dumps_compact({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                          "data": x.flatten().tolist()}]})
        headers = {"Content-Type": "application/json"}
    host, port = srv.http_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    conn.putrequest("POST", path)
    for k, v in {**headers, "Content-Length": str(len(body)), "Expect": "100-continue"}.items():
        conn.putheader(k, v)
    conn.endheaders()
    _await_continue(srv, conn)
    half = len(body) // 2
    conn.send(body[:half])
    return conn, body[half:], x, version


def _await_continue(srv, conn: http.client.HTTPConnection) -> None:
    """Reads the interim `100 Continue` that the server sends when the handler starts reading the
    body: from then on the request is in flight (its headers parsed, its handler running).
    Reads only those bytes, so that `getresponse()` later sees the final response."""
    got = b""
    while not got.endswith(b"\r\n\r\n"):
        try:
            chunk = conn.sock.recv(1)
        except OSError as e:
            pytest.fail(f"no 100 Continue ({e}) after {got!r}:\n{srv.log_tail()}")
        if not chunk:
            pytest.fail(f"the server closed the connection after {got!r}:\n{srv.log_tail()}")
        got += chunk
    assert got.startswith(b"HTTP/1.1 100 "), got


def _wait_for_log(srv, text: str, timeout: float = 10.0) -> None:
    """Waits until the server's log contains `text` (or fails, or the process exits)."""
    deadline = time.monotonic() + timeout
    while text not in srv.log():
        if srv.proc.poll() is not None:
            pytest.fail(f"quiver exited ({srv.proc.returncode}) before logging {text!r}:\n{srv.log_tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"quiver did not log {text!r} within {timeout} s:\n{srv.log_tail()}")
        time.sleep(0.02)


def test_sigterm_drains_in_flight_requests(lone_server, reference_for_repo):
    srv = lone_server
    n = 8
    # Each returns once the server has parsed its headers and waits for the rest of its body.
    pending = [_start_request(srv, i) for i in range(n)]
    srv.proc.send_signal(signal.SIGTERM)
    # The rest of the bodies is sent only once the server is draining.
    _wait_for_log(srv, "shutting down")
    assert srv.proc.poll() is None, (
        f"quiver exited ({srv.proc.returncode}) with {n} requests in flight:\n{srv.log_tail()}"
    )
    ref = reference_for_repo(srv.repo)
    for conn, rest, x, version in pending:
        conn.send(rest)
    for conn, rest, x, version in pending:
        try:
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            pytest.fail(f"an in-flight request lost its answer during shutdown ({e!r}):\n{srv.log_tail()}")
        assert resp.status == 200, (resp.status, data[:300], srv.log_tail())
        n_head = resp.getheader("Inference-Header-Content-Length")
        body = json.loads(data[: int(n_head)] if n_head else data)
        out = body["outputs"][0]
        assert out["shape"] == [x.shape[0], 4]
        if n_head:
            got = np.frombuffer(data[int(n_head):], np.float32).reshape(out["shape"])
        else:
            got = np.asarray(out["data"], np.float32).reshape(out["shape"])
        assert_same(got, ref.run("mlp", {"input": x}, version)["probabilities"])
        conn.close()
    try:
        rc = srv.proc.wait(10)
    except Exception:
        pytest.fail(f"quiver did not exit within 10 s after draining:\n{srv.log_tail()}")
    assert rc == 0, f"exit code {rc}:\n{srv.log_tail()}"


def test_sigint_exits_zero(lone_server):
    t0 = time.monotonic()
    rc = lone_server.terminate(signal.SIGINT, timeout=10)
    assert rc == 0, f"exit code {rc} after SIGINT:\n{lone_server.log_tail()}"
    assert time.monotonic() - t0 < 5, "an idle server took more than 5 s to stop"


def test_idle_keepalive_connection_does_not_block_shutdown(lone_server):
    """An idle keep-alive connection (a client pool) must not hold the server open."""
    host, port = lone_server.http_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/v2/health/ready")
    r = conn.getresponse()
    r.read()
    assert r.status == 200
    t0 = time.monotonic()
    rc = lone_server.terminate(signal.SIGTERM, timeout=10)
    assert rc == 0, f"exit code {rc}:\n{lone_server.log_tail()}"
    assert time.monotonic() - t0 < 5, "an idle keep-alive connection delayed shutdown by > 5 s"
    conn.close()
