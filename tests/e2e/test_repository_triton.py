"""The repository API as Triton's own clients use it (its `simple_*_model_control.py`
examples): an index of every model directory, loaded or not; failed loads, an override
that does not parse included, saying "failed to load"; and a model's files confined to
its version directory, whatever an override config or a symlink says."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

MODELS = ["leaky", "linear", "mlp", "simple", "spare"]


@pytest.fixture(scope="module")
def server(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Explicit model control over five model directories, only `linear` loaded; `leaky`'s
    model file is a symlink to /etc/passwd, `spare` is never touched."""
    root = tmp_path_factory.mktemp("triton-repo")
    for name in ("simple", "mlp", "linear"):
        shutil.copytree(demo_repo / name, root / name)
    shutil.copytree(demo_repo / "mlp", root / "spare")
    (root / "leaky" / "1").mkdir(parents=True)
    (root / "leaky" / "1" / "model.onnx").symlink_to("/etc/passwd")
    proc = ServerProcess(
        root,
        "--model-control-mode",
        "explicit",
        "--load-model",
        "linear",
        log_dir=tmp_path_factory.mktemp("logs"),
    ).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def test_the_index_lists_every_model_directory(server: ServerProcess) -> None:
    http_index = httpclient.InferenceServerClient(server.url).get_model_repository_index()
    grpc_index = grpcclient.InferenceServerClient(server.grpc_url).get_model_repository_index()
    assert len(http_index) == len(grpc_index.models) == len(MODELS)  # as the examples count
    rows = {r["name"]: r for r in http_index}
    assert sorted(rows) == MODELS == sorted(m.name for m in grpc_index.models)
    assert rows["linear"] == {"name": "linear", "version": "1", "state": "READY", "reason": ""}
    assert rows["spare"] == {"name": "spare", "version": "", "state": "", "reason": ""}
    spare = next(m for m in grpc_index.models if m.name == "spare")
    assert (spare.version, spare.state, spare.reason) == ("", "", "")

    status, _, body = server.request("POST", "/v2/repository/index", b'{"ready": true}')
    ready = orjson.loads(body)
    assert status == 200 and {r["state"] for r in ready} == {"READY"}
    assert "linear" in {r["name"] for r in ready} and "spare" not in {r["name"] for r in ready}


def _load(server: ServerProcess, name: str, config: str) -> tuple[int, str]:
    body = orjson.dumps({"parameters": {"config": config}})
    status, _, raw = server.request("POST", f"/v2/repository/models/{name}/load", body)
    return status, orjson.loads(raw).get("error", "") if raw else ""


@pytest.mark.parametrize("filename", ["../../../../etc/passwd", "/etc/passwd"])
def test_an_override_naming_a_file_outside_is_refused(server: ServerProcess, filename: str) -> None:
    status, error = _load(
        server, "mlp", orjson.dumps({"default_model_filename": filename}).decode()
    )
    assert status == 400
    assert error.startswith(f"failed to load 'mlp': default_model_filename {filename!r} leaves")
    assert error.endswith("refused")

    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as info:
        client.load_model(
            "linear", config=orjson.dumps({"default_model_filename": filename}).decode()
        )
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "refused" in info.value.message()

    # nothing was read, and the server serves on: linear's old version is untouched
    assert "root:" not in server.log()
    inp = httpclient.InferInput("x", [1, 256], "FP32")
    inp.set_data_from_numpy(np.ones((1, 256), np.float32))
    out = httpclient.InferenceServerClient(server.url).infer("linear", [inp]).as_numpy("y")
    assert out is not None and out.shape == (1, 256)


def test_a_model_file_linking_out_is_refused(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException) as info:
        client.load_model("leaky")
    message = info.value.message()
    assert message.startswith("failed to load 'leaky': version 1: default_model_filename")
    assert message.endswith("leaves the model's version directory: refused")
    rows = {r["name"]: r for r in client.get_model_repository_index()}
    assert rows["leaky"]["state"] == "UNAVAILABLE" and "refused" in rows["leaky"]["reason"]
    assert client.is_server_live() and client.is_model_ready("linear")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritons_model_control_example(server: ServerProcess, protocol: str) -> None:
    """The steps of Triton's simple_{http,grpc}_model_control.py, its checks included."""
    mod = httpclient if protocol == "http" else grpcclient
    client = mod.InferenceServerClient(server.url if protocol == "http" else server.grpc_url)
    client.load_model("simple")
    assert client.is_model_ready("simple")
    with pytest.raises(InferenceServerException) as info:
        client.load_model("simple", config='"parameters": {"config": {{"max_batch_size": "16"}}}')
    assert "failed to load" in info.value.message()
    client.load_model("simple", config='{"max_batch_size":"16"}')
    config = client.get_model_config("simple")
    assert (config["max_batch_size"] if protocol == "http" else config.config.max_batch_size) == 16
    client.unload_model("simple")
    assert not client.is_model_ready("simple")
    with pytest.raises(InferenceServerException) as info:
        client.load_model("wrong_model_name")
    assert "failed to load" in info.value.message()
