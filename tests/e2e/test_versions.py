"""Version labels and weighted traffic splits, through V2 REST, gRPC and TF Serving."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import tritonclient.grpc as grpcclient

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

CONFIG = """
max_batch_size: 8
dynamic_batching: {}
version_policy: {all: {}}
version_labels: {stable: 1, canary: 2}
traffic_split: {1: 90, 2: 10}
"""
BODY = orjson.dumps(
    {"inputs": [{"name": "features", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}
)


@pytest.fixture(scope="module")
def canary(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("canary-repo")
    for v in ("1", "2"):
        (root / "mlp" / v).mkdir(parents=True)
        shutil.copy(demo_repo / "mlp" / "1" / "model.onnx", root / "mlp" / v / "model.onnx")
    (root / "mlp" / "config.yaml").write_text(CONFIG)
    proc = ServerProcess(root, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    assert proc.stop() == 0


def version_of(server: ServerProcess, path: str) -> str:
    status, _, body = server.request("POST", path, BODY)
    assert status == 200, body
    return str(orjson.loads(body)["model_version"])


def test_split_90_10_within_a_binomial_bound(canary: ServerProcess) -> None:
    n = 2000
    seen = Counter(version_of(canary, "/v2/models/mlp/infer") for _ in range(n))
    assert set(seen) == {"1", "2"}
    sd = math.sqrt(n * 0.1 * 0.9)  # binomial(2000, 0.1): mean 200, sd 13.4
    assert abs(seen["2"] - 200) < 5 * sd, seen


def test_labels_on_every_protocol(canary: ServerProcess) -> None:
    assert version_of(canary, "/v2/models/mlp/versions/canary/infer") == "2"
    assert version_of(canary, "/v2/models/mlp/versions/stable/infer") == "1"
    client = grpcclient.InferenceServerClient(canary.grpc_url)
    inp = grpcclient.InferInput("features", [1, 64], "FP32")
    import numpy as np

    inp.set_data_from_numpy(np.full((1, 64), 0.5, np.float32))
    assert client.infer("mlp", [inp], model_version="canary").get_response().model_version == "2"
    status, _, body = canary.request("GET", "/v1/models/mlp/labels/canary")
    assert status == 200
    assert orjson.loads(body)["model_version_status"][0]["version"] == "2"
    status, _, body = canary.request(
        "POST", "/v1/models/mlp/labels/stable:predict", orjson.dumps({"instances": [[0.5] * 64]})
    )
    assert status == 200 and len(orjson.loads(body)["predictions"][0]) == 10
    status, _, body = canary.request("POST", "/v2/models/mlp/versions/beta/infer", BODY)
    assert status == 404 and "no version label 'beta'" in orjson.loads(body)["error"]


def test_routing_api_moves_traffic_and_labels(canary: ServerProcess) -> None:
    post = canary.request
    routing = "/v2/repository/models/mlp/routing"
    assert post("POST", routing, orjson.dumps({"traffic_split": {"2": 1}}))[0] == 200
    assert {version_of(canary, "/v2/models/mlp/infer") for _ in range(50)} == {"2"}
    assert post("POST", routing, orjson.dumps({"version_labels": {"stable": 2}}))[0] == 200
    assert version_of(canary, "/v2/models/mlp/versions/stable/infer") == "2"
    status, _, body = post("POST", routing, orjson.dumps({"version_labels": {"x": 7}}))
    assert status == 400 and "not loaded" in orjson.loads(body)["error"]
    status, _, body = post("POST", routing, orjson.dumps({"traffic_split": {"1": -1}}))
    assert status == 400 and ">= 0" in orjson.loads(body)["error"]
    assert (
        post(
            "POST",
            routing,
            orjson.dumps(
                {"version_labels": {"stable": 1, "canary": 2}, "traffic_split": {"1": 90, "2": 10}}
            ),
        )[0]
        == 200
    )
    config = orjson.loads(post("GET", "/v2/models/mlp/config")[2])
    assert config["version_labels"] == {"stable": 1, "canary": 2}
