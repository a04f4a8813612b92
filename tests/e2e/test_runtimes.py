"""Every runtime behind the same server: the small CNN with the same weights as ONNX,
TorchScript, an ExportedProgram, a Keras SavedModel and OpenVINO IR, served by one
`conveyor serve`; every protocol gets the same logits from each (and the in-process
API too); bad inputs are refused alike; a broken file of each format fails its model
alone."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conveyor.demo import frameworks
from conveyor.local import Conveyor
from tests.e2e.utils import ServerProcess
from tests.runtimes.test_tensorflow import build_two_signatures

pytestmark = pytest.mark.e2e

NET = frameworks.small_cnn()
TORCHSCRIPT_CONFIG = """platform: "pytorch_libtorch"
max_batch_size: 8
input [{ name: "INPUT__0" data_type: TYPE_FP32 dims: [3, 32, 32] }]
output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [10] }]
"""
# model -> (its input, its output): none but TorchScript has a config
MODELS = {
    "cnn_onnx": ("x", "logits"),
    "cnn_torchscript": ("INPUT__0", "OUTPUT__0"),
    "cnn_exported": ("x", "OUTPUT__0"),
    "cnn_savedmodel": ("x", "output_0"),
    "cnn_openvino": ("x", "logits"),
}
BROKEN = {
    "broken_torchscript": "model.pt",
    "broken_exported": "model.pt2",
    "broken_savedmodel": "model.savedmodel/saved_model.pb",
    "broken_openvino": "model.xml",
}


@pytest.fixture(scope="module")
def repo(framework_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runtimes-repo")
    files = {
        "cnn_onnx": ["model.onnx"],
        "cnn_torchscript": ["model.pt"],
        "cnn_exported": ["model.pt2"],
        "cnn_savedmodel": ["model.savedmodel"],
        "cnn_openvino": ["model.xml", "model.bin"],
    }
    for model, names in files.items():
        (root / model / "1").mkdir(parents=True)
        for name in names:
            source = framework_models / name
            copy = shutil.copytree if source.is_dir() else shutil.copy
            copy(source, root / model / "1" / name)
    (root / "cnn_torchscript" / "config.pbtxt").write_text(TORCHSCRIPT_CONFIG)
    for model, name in BROKEN.items():
        path = root / model / "1" / name
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\x08\x01garbage, not a model")
    (root / "broken_torchscript" / "config.pbtxt").write_text(TORCHSCRIPT_CONFIG)
    (root / "broken_openvino" / "1" / "model.bin").write_bytes(b"")
    build_two_signatures(root / "signatures" / "1" / "model.savedmodel")
    return root


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs")).start(timeout_s=180)
    yield proc
    assert proc.stop() == 0, proc.log()


def _close(a: np.ndarray, x: np.ndarray) -> None:
    np.testing.assert_allclose(a, frameworks.reference(NET, x), atol=1e-3)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_v2_rest_and_grpc_agree_with_the_reference(server: ServerProcess, model: str) -> None:
    name, output = MODELS[model]
    x = NET.sample(3)
    rest = httpclient.InferenceServerClient(server.url)
    inp = httpclient.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    _close(rest.infer(model, [inp]).as_numpy(output), x)
    as_json = httpclient.InferInput(name, list(x.shape), "FP32")
    as_json.set_data_from_numpy(x, binary_data=False)
    _close(rest.infer(model, [as_json]).as_numpy(output), x)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    ginp = grpcclient.InferInput(name, list(x.shape), "FP32")
    ginp.set_data_from_numpy(x)
    _close(grpc.infer(model, [ginp]).as_numpy(output), x)
    meta = rest.get_model_metadata(model)
    assert meta["inputs"] == [{"name": name, "datatype": "FP32", "shape": [-1, 3, 32, 32]}]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_tfserving_rest_rows_and_columns(server: ServerProcess, model: str) -> None:
    name, _ = MODELS[model]
    x = NET.sample(2)
    body = orjson.dumps({"instances": x.tolist()})
    status, _, raw = server.request("POST", f"/v1/models/{model}:predict", body)
    assert status == 200, raw
    _close(np.array(orjson.loads(raw)["predictions"], np.float32), x)
    body = orjson.dumps({"signature_name": "serving_default", "inputs": {name: x.tolist()}})
    status, _, raw = server.request("POST", f"/v1/models/{model}:predict", body)
    assert status == 200, raw
    _close(np.array(orjson.loads(raw)["outputs"], np.float32), x)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_bad_inputs_are_refused_alike(server: ServerProcess, model: str) -> None:
    name, _ = MODELS[model]
    cases = [
        ([2, 3, 32, 32], "INT32", "datatype"),
        ([2, 3, 16, 16], "FP32", "shape"),
    ]
    for shape, datatype, word in cases:
        data = [0] * int(np.prod(shape))
        body = orjson.dumps(
            {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}
        )
        status, _, raw = server.request("POST", f"/v2/models/{model}/infer", body)
        assert status == 400, raw
        assert word in orjson.loads(raw)["error"]


def test_a_broken_file_fails_its_model_alone(server: ServerProcess) -> None:
    index = {r["name"]: r for r in orjson.loads(server.request("POST", "/v2/repository/index")[2])}
    for model in MODELS:
        assert index[model]["state"] == "READY", index[model]
    expected = {
        "broken_torchscript": "model.pt is not a TorchScript model",
        "broken_exported": "model.pt2 is not a torch.export program",
        "broken_savedmodel": "TensorFlow cannot load model.savedmodel",
        "broken_openvino": "OpenVINO cannot read model.xml",
    }
    for model, text in expected.items():
        assert index[model]["state"] == "UNAVAILABLE"
        assert text in index[model]["reason"], index[model]["reason"]


def test_tfserving_metadata_and_signature_names(server: ServerProcess) -> None:
    status, _, raw = server.request("GET", "/v1/models/signatures/metadata")
    assert status == 200
    defs = orjson.loads(raw)["metadata"]["signature_def"]["signature_def"]
    assert sorted(defs) == ["plus_one", "serving_default"]
    assert list(defs["plus_one"]["outputs"]) == ["z"]
    assert defs["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"
    body = orjson.dumps({"signature_name": "plus_one", "instances": [[1.0, 2.0, 3.0, 4.0]]})
    status, _, raw = server.request("POST", "/v1/models/signatures:predict", body)
    assert status == 400
    error = orjson.loads(raw)["error"]
    assert "serves signature 'serving_default', not 'plus_one'" in error
    assert "TF_SIGNATURE_DEF" in error
    body = orjson.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]]})
    status, _, raw = server.request("POST", "/v1/models/signatures:predict", body)
    assert status == 200 and orjson.loads(raw)["predictions"] == [[2.0, 4.0, 6.0, 8.0]]


def test_the_in_process_api_agrees(repo: Path) -> None:
    x = NET.sample(2)
    with Conveyor(repo, models=sorted(MODELS)) as cv:
        for model, (name, output) in MODELS.items():
            _close(cv.infer(model, {name: x})[output], x)
