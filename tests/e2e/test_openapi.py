"""The published API, checked by a tool no one here wrote: the OpenAPI 3 document served at
/openapi.json is valid, and schemathesis (property-based, from the document alone) finds no
server error, no response that breaks the document and no failure of its other checks, against
`quiver serve` on the example models and against `quiver up`'s management API with its token.

The checks that cannot apply are excluded narrowly; docs/openapi/README.md says why for each.
Each run is bounded (examples per operation and wall time) to keep the test near a minute."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import REPO_ROOT, QuiverServer, copy_deploy_models
from test_control_plane import UpServer

OPENAPI_DIR = REPO_ROOT / "docs" / "openapi"
SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")

# positive_data_acceptance: valid-by-schema data must get a 2xx. A schema cannot say which
# input names, datatypes and shapes a given model takes, which models a repository holds, or
# which storageUri exists, so valid-looking inference requests and InferenceServices are rightly
# refused with 400/404/422. Every other check runs.
EXCLUDED_CHECKS = ["positive_data_acceptance"]
# Bounds: examples per operation, and seconds for all the runs together (scaled by
# QUIVER_SCHEMATHESIS_SECONDS; the box has two cores, shared).
MAX_EXAMPLES = int(os.environ.get("QUIVER_SCHEMATHESIS_EXAMPLES", "25"))
MAX_SECONDS = int(os.environ.get("QUIVER_SCHEMATHESIS_SECONDS", "75"))


def schemathesis(url: str, report: Path, seconds: int, *extra: str) -> None:
    if SCHEMATHESIS is None:
        pytest.fail("schemathesis is not installed: run tests/setup-venv.sh (tests/requirements.txt pins it)")
    cmd = [
        SCHEMATHESIS, "run", f"{url}/openapi.json",
        "--checks", "all", "--exclude-checks", ",".join(EXCLUDED_CHECKS),
        "--max-examples", str(MAX_EXAMPLES), "--max-time", str(seconds),
        "--workers", "1", "--seed", "15", "--generation-database", "none", "--no-color", "--request-timeout", "10",
        "--report", "junit", "--report-dir", str(report),
        *extra,
    ]
    env = dict(os.environ, SCHEMATHESIS_HOOKS="", NO_COLOR="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 3 + 60, env=env)
    out = proc.stdout + proc.stderr
    print(out[-6000:])
    assert proc.returncode == 0, f"schemathesis found failures ({' '.join(cmd)}):\n{out[-20000:]}"


def running(srv, name: str, binary: str):
    """Starts `srv` and yields it; afterwards it must still be alive and exit 0 on SIGTERM."""
    srv.start()
    yield srv
    alive = srv.proc.poll() is None
    rc = srv.terminate(signal.SIGTERM, timeout=15)
    assert alive, f"{name} died under schemathesis:\n{srv.log_tail()}"
    assert rc == 0, f"{binary} did not exit 0 on SIGTERM (rc={rc}):\n{srv.log_tail()}"


@pytest.fixture(scope="module")
def data_plane(tmp_path_factory):
    """Its own server: schemathesis loads and unloads models, which must not disturb other tests."""
    repo = copy_deploy_models(tmp_path_factory.mktemp("openapi") / "models")
    srv = QuiverServer(repo, tmp_path_factory.mktemp("log") / "quiver.log",
                       ["--model-control-mode", "explicit", "--load-model", "*"])
    yield from running(srv, "the server", "quiver")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    home = tmp_path_factory.mktemp("openapi-home")
    srv = UpServer(home, tmp_path_factory.mktemp("log") / "up.log")
    yield from running(srv, "quiver up", "quiver up")


def validate(document: dict) -> None:
    from openapi_spec_validator import validate as validate_spec

    validate_spec(document)


def test_the_served_document_is_the_published_one_and_valid(data_plane):
    r = requests.get(f"{data_plane.http_url}/openapi.json", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    served = r.json()
    assert served == json.loads((OPENAPI_DIR / "quiver.json").read_text())
    validate(served)
    for path in ["/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}/infer", "/v1/models/{MODEL_NAME}:predict",
                 "/openai/v1/embeddings", "/v2/repository/models/{MODEL_NAME}/traffic", "/metrics"]:
        assert path in served["paths"], path
    for name in ["metadata_server_response", "metadata_model_response", "inference_request", "inference_response",
                 "request_input", "response_output", "tensor_data", "inference_error_response"]:
        assert name in served["components"]["schemas"], name
    import yaml

    y = requests.get(f"{data_plane.http_url}/openapi.yaml", timeout=10)
    assert y.status_code == 200 and y.headers["content-type"] == "application/yaml"
    assert yaml.safe_load(y.text) == served


def test_quiver_up_serves_one_document_with_the_management_api(control_plane):
    served = requests.get(f"{control_plane.http_url}/openapi.json", timeout=10).json()
    validate(served)
    paths = served["paths"]
    assert "/v2/models/{MODEL_NAME}/infer" in paths
    assert "/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/{name}" in paths
    assert served["components"]["securitySchemes"]["bearerAuth"] == {
        **served["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}


def test_schemathesis_finds_nothing_on_the_data_plane(data_plane, tmp_path):
    # Load and unload run apart, after the rest: a model this run unloads answers 503 (Triton's
    # UNAVAILABLE, KServe's ModelNotReady) until loaded again, rightly, and that must not read as
    # a server error of the operations that use it.
    schemathesis(data_plane.http_url, tmp_path / "serving", MAX_SECONDS * 2 // 5, "--exclude-path-regex", "/(load|unload)$")
    schemathesis(data_plane.http_url, tmp_path / "repository", MAX_SECONDS // 5, "--include-path-regex", "/v2/repository/(index|models/[^/]+/(load|unload))$")
    assert data_plane.proc.poll() is None, data_plane.log_tail()


def test_schemathesis_finds_nothing_on_the_management_api(control_plane, tmp_path):
    token = (control_plane.home / "token").read_text().strip()
    schemathesis(control_plane.http_url, tmp_path, MAX_SECONDS * 2 // 5, "-H", f"Authorization: Bearer {token}",
                 "--include-path-regex", "/apis?(/|$)")
    assert control_plane.proc.poll() is None, control_plane.log_tail()
