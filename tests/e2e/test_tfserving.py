"""TensorFlow Serving's REST API, with requests written from its REST documentation."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import orjson
import pytest
from onnx import TensorProto, helper

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tfs(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("tfs-repo")
    for name in ("simple", "mlp"):
        shutil.copytree(demo_repo / name, root / name)
    # a string model: text [batch, 1] -> echo (Identity), for {"b64": ...} values
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["echo"])],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch", 1])],
        [helper.make_tensor_value_info("echo", TensorProto.STRING, ["batch", 1])],
    )
    (root / "echo" / "1").mkdir(parents=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(root / "echo" / "1" / "model.onnx"))
    proc = ServerProcess(root, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    assert proc.stop() == 0


def post(server: ServerProcess, path: str, doc: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    status, _, body = server.request("POST", path, orjson.dumps(doc))
    return status, orjson.loads(body)


def test_status_and_metadata(tfs: ServerProcess) -> None:
    status, _, body = tfs.request("GET", "/v1/models/mlp")
    assert status == 200
    assert orjson.loads(body) == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert tfs.request("GET", "/v1/models/mlp/versions/1")[0] == 200
    meta = orjson.loads(tfs.request("GET", "/v1/models/mlp/metadata")[2])
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["features"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["features"]["tensor_shape"]["dim"]] == ["-1", "64"]
    assert meta["model_spec"]["version"] == "1"


def test_row_format_unnamed_single_input(tfs: ServerProcess) -> None:
    x = np.random.default_rng(0).standard_normal((2, 64)).round(4).tolist()
    status, doc = post(tfs, "/v1/models/mlp:predict", {"instances": x})
    assert status == 200
    preds = np.array(doc["predictions"])
    assert preds.shape == (2, 10)
    np.testing.assert_allclose(preds.sum(axis=1), [1, 1], rtol=1e-5)
    status, doc2 = post(tfs, "/v1/models/mlp/versions/1:predict", {"inputs": x})
    assert status == 200
    np.testing.assert_allclose(np.array(doc2["outputs"]), preds, rtol=1e-6)


def test_named_inputs_row_and_columnar(tfs: ServerProcess) -> None:
    a, b = list(range(16)), [1] * 16
    status, doc = post(
        tfs,
        "/v1/models/simple:predict",
        {
            "signature_name": "serving_default",
            "instances": [{"INPUT0": a, "INPUT1": b}, {"INPUT0": b, "INPUT1": a}],
        },
    )
    assert status == 200
    assert doc["predictions"][0]["OUTPUT0"] == [x + 1 for x in a]
    assert doc["predictions"][1]["OUTPUT1"] == [1 - x for x in a]
    status, doc = post(tfs, "/v1/models/simple:predict", {"inputs": {"INPUT0": [a], "INPUT1": [b]}})
    assert status == 200
    assert doc["outputs"]["OUTPUT1"] == [[x - 1 for x in a]]


def test_b64_strings(tfs: ServerProcess) -> None:
    hello = base64.b64encode(b"hello").decode()
    status, doc = post(tfs, "/v1/models/echo:predict", {"instances": [[{"b64": hello}], ["world"]]})
    assert status == 200, doc
    assert doc["predictions"] == [["hello"], ["world"]]


@pytest.mark.parametrize(
    ("path", "doc", "status", "message"),
    [
        ("/v1/models/mlp:predict", {"nothing": 1}, 400, "either 'instances'"),
        ("/v1/models/mlp:predict", {"instances": [["a"] * 64]}, 400, "expected FP32 values"),
        ("/v1/models/mlp:predict", {"instances": [[1.0] * 63]}, 400, "expected shape"),
        ("/v1/models/simple:predict", {"instances": [[1] * 16]}, 400, "must be an object"),
        ("/v1/models/simple:predict", {"instances": [{"INPUT9": [1]}]}, 400, "unknown input"),
        (
            "/v1/models/ghost:predict",
            {"instances": [1]},
            404,
            "Request for unknown model: 'ghost' is not found",
        ),
        (
            "/v1/models/mlp/labels/stable:predict",
            {"instances": [1]},
            404,
            "no version label 'stable'",
        ),
        ("/v1/models/mlp:classify", {"instances": [1]}, 404, "only :predict"),
        ("/v1/models/echo:predict", {"instances": [[{"b64": "%%%"}]]}, 400, "invalid base64"),
    ],
)
def test_errors(tfs: ServerProcess, path: str, doc: object, status: int, message: str) -> None:
    got, body = post(tfs, path, doc)
    assert got == status and message in body["error"]
