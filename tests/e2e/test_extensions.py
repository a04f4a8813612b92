"""Triton's extensions through the real clients: system shared memory (HTTP and gRPC),
statistics over REST, and explicit model control (load, reload with a config override,
unload) with a repository index that says why a load failed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def explicit(
    demo_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Path]]:
    """A server in explicit model-control mode over a private copy of two demo models."""
    root = tmp_path_factory.mktemp("explicit-repo")
    for name in ("simple", "mlp"):
        shutil.copytree(demo_repo / name, root / name)
    proc = ServerProcess(
        root,
        "--model-control-mode",
        "explicit",
        "--load-model",
        "simple",
        log_dir=tmp_path_factory.mktemp("logs"),
    ).start()
    yield proc, root
    assert proc.stop() == 0


@pytest.fixture
def regions() -> Iterator[list[object]]:
    handles: list[object] = []
    yield handles
    for h in handles:
        shm.destroy_shared_memory_region(h)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_system_shared_memory_in_and_out(
    server: ServerProcess, regions: list[object], protocol: str
) -> None:
    mod = httpclient if protocol == "http" else grpcclient
    client = mod.InferenceServerClient(server.url if protocol == "http" else server.grpc_url)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 2, np.int32)
    nbytes = a.nbytes
    tag = f"conveyor_test_{protocol}"
    inp = shm.create_shared_memory_region(f"{tag}_in", f"/{tag}_in", 2 * nbytes)
    out = shm.create_shared_memory_region(f"{tag}_out", f"/{tag}_out", 2 * nbytes)
    regions += [inp, out]
    shm.set_shared_memory_region(inp, [a, b])
    client.unregister_system_shared_memory()
    client.register_system_shared_memory(f"{tag}_in", f"/{tag}_in", 2 * nbytes)
    client.register_system_shared_memory(f"{tag}_out", f"/{tag}_out", 2 * nbytes)
    status = client.get_system_shared_memory_status()
    names = [r["name"] for r in status] if protocol == "http" else list(status.regions)
    assert sorted(names) == [f"{tag}_in", f"{tag}_out"]

    inputs = [
        mod.InferInput("INPUT0", [1, 16], "INT32"),
        mod.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    inputs[0].set_shared_memory(f"{tag}_in", nbytes)
    inputs[1].set_shared_memory(f"{tag}_in", nbytes, offset=nbytes)
    outputs = [mod.InferRequestedOutput("OUTPUT0"), mod.InferRequestedOutput("OUTPUT1")]
    outputs[0].set_shared_memory(f"{tag}_out", nbytes)
    outputs[1].set_shared_memory(f"{tag}_out", nbytes, offset=nbytes)
    result = client.infer("simple", inputs, outputs=outputs)
    assert result.get_output("OUTPUT0") is not None
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.int32, [1, 16]), a + b)
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(out, np.int32, [1, 16], offset=nbytes), a - b
    )

    # a region too small for the tensor, and an unregistered one: clear errors
    inputs[1].set_shared_memory(f"{tag}_in", nbytes, offset=nbytes + 8)
    with pytest.raises(InferenceServerException, match="do not fit shared-memory region"):
        client.infer("simple", inputs)
    inputs[1].set_shared_memory("nowhere", nbytes)
    with pytest.raises(InferenceServerException, match="'nowhere' is not registered"):
        client.infer("simple", inputs)
    with pytest.raises(InferenceServerException, match="cannot open shared-memory object"):
        client.register_system_shared_memory("bad", "/no_such_object", 64)
    client.unregister_system_shared_memory()
    assert len(client.get_system_shared_memory_status()) == 0 if protocol == "http" else True


def test_statistics_over_rest(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.url)
    a = np.ones((3, 16), np.int32)
    inputs = [
        httpclient.InferInput("INPUT0", [3, 16], "INT32"),
        httpclient.InferInput("INPUT1", [3, 16], "INT32"),
    ]
    for i in inputs:
        i.set_data_from_numpy(a)
    before = client.get_inference_statistics("simple")["model_stats"][0]
    client.infer("simple", inputs)
    stats = client.get_inference_statistics("simple", "1")["model_stats"][0]
    assert stats["name"] == "simple" and stats["version"] == "1"
    assert stats["inference_count"] == before["inference_count"] + 3
    assert stats["execution_count"] == before["execution_count"] + 1
    s = stats["inference_stats"]
    assert s["success"]["count"] == before["inference_stats"]["success"]["count"] + 1
    assert s["queue"]["count"] == s["compute_infer"]["count"] >= 1
    assert any(b["batch_size"] == 3 for b in stats["batch_stats"])
    everything = client.get_inference_statistics()["model_stats"]
    assert {m["name"] for m in everything} == {"simple", "linear", "mlp", "resnet"}


def test_explicit_load_reload_unload(explicit: tuple[ServerProcess, Path]) -> None:
    proc, _ = explicit
    client = httpclient.InferenceServerClient(proc.url)
    assert not client.is_model_ready("mlp") if _exists(client, "mlp") else True
    client.load_model("mlp")
    assert client.is_model_ready("mlp")
    assert client.get_model_config("mlp")["max_batch_size"] == 8

    override = {"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_microseconds": 100}}
    client.load_model("mlp", config=orjson.dumps(override).decode())
    assert client.get_model_config("mlp")["max_batch_size"] == 4

    with pytest.raises(InferenceServerException, match="config says INT64"):
        client.load_model(
            "mlp",
            config=orjson.dumps(
                {"input": [{"name": "features", "data_type": "TYPE_INT64", "dims": [64]}]}
            ).decode(),
        )
    assert client.get_model_config("mlp")["max_batch_size"] == 4  # the old one still serves
    index = {r["name"]: r for r in client.get_model_repository_index()}
    assert "reload failed" in index["mlp"]["reason"] and index["mlp"]["state"] == "READY"

    grpc_client = grpcclient.InferenceServerClient(f"127.0.0.1:{proc.grpc_port}")
    grpc_client.unload_model("mlp")
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("mlp")
    index = {r["name"]: r for r in client.get_model_repository_index()}
    assert index["mlp"]["state"] == "UNAVAILABLE" and index["mlp"]["reason"] == "unloaded"
    with pytest.raises(InferenceServerException, match="no such model"):
        client.load_model("ghost")
    assert client.is_model_ready("simple")


def _exists(client: httpclient.InferenceServerClient, name: str) -> bool:
    return any(r["name"] == name for r in client.get_model_repository_index())
