"""Python models (`backend: python`) in worker processes, through the real server and the
official tritonclient: Triton's python-backend contract, BLS, decoupled models, custom
metrics, Conveyor's own model form, and what happens when a model misbehaves."""

from __future__ import annotations

import json
import os
import queue
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

MODELS = Path(__file__).parent.parent / "runtimes" / "python" / "models"


def python_repo(root: Path, names: list[str] | None = None) -> Path:
    """Our test models, copied; envcheck's environment is an interpreter link inside it."""
    repo = root / "repo"
    for model in MODELS.iterdir():
        if model.is_dir() and (names is None or model.name in names):
            shutil.copytree(model, repo / model.name, ignore=shutil.ignore_patterns("__pycache__"))
    env = repo / "envcheck" / "env" / "bin"
    if env.parent.parent.exists():
        env.mkdir(parents=True)
        (env / "python3").symlink_to(sys.executable)
    return repo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = python_repo(tmp_path_factory.mktemp("py"))
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(server.url)
    yield client
    client.close()


@pytest.fixture
def grpc(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    yield client
    client.close()


def add_sub_inputs(module: object, a: np.ndarray, b: np.ndarray) -> list[object]:
    inputs = [
        module.InferInput("INPUT0", list(a.shape), "FP32"),  # type: ignore[attr-defined]
        module.InferInput("INPUT1", list(b.shape), "FP32"),  # type: ignore[attr-defined]
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def mode_input(module: object, mode: int) -> list[object]:
    tensor = module.InferInput("MODE", [1, 1], "INT32")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(np.array([[mode]], dtype=np.int32))
    return [tensor]


def test_add_sub_over_http_and_grpc(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), np.float32)
    result = http.infer("add_sub", add_sub_inputs(httpclient, a, b), request_id="7")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert result.get_response()["id"] == "7"
    result = grpc.infer(
        "add_sub", add_sub_inputs(grpcclient, a, b), parameters={"scale": 3}
    )  # request parameters reach request.parameters()
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), (a + b) * 3)
    meta = http.get_model_metadata("add_sub")
    assert meta["platform"] == "" or meta["platform"] == "python"
    assert http.is_model_ready("add_sub")


def test_config_is_tritons_json(http: httpclient.InferenceServerClient) -> None:
    config = http.get_model_config("add_sub")
    assert config["backend"] == "python" and config["default_model_filename"] == "model.py"
    assert config["max_batch_size"] == 8
    auto = http.get_model_config("autocomplete")  # declared by auto_complete_config
    assert auto["max_batch_size"] == 4 and "dynamic_batching" in auto
    assert auto["input"][0]["name"] == "IN" and auto["input"][0]["dims"] == [2]
    x = httpclient.InferInput("IN", [1, 2], "INT64")
    x.set_data_from_numpy(np.array([[1, 2]], dtype=np.int64))
    out = http.infer("autocomplete", [x]).as_numpy("OUT")
    np.testing.assert_array_equal(out, [[3, 6]])


def test_bytes_tensors_arrive_as_bytes(http: httpclient.InferenceServerClient) -> None:
    text = np.array([b"hello", "wörld".encode()], dtype=np.object_)
    tensor = httpclient.InferInput("TEXT", [2], "BYTES")
    tensor.set_data_from_numpy(text)
    result = http.infer("text", [tensor])
    assert list(result.as_numpy("UPPER")) == [b"HELLO", "WöRLD".encode()]
    assert list(result.as_numpy("LENGTH")) == [5, 6]


def test_bls_sync_async_and_decoupled(http: httpclient.InferenceServerClient) -> None:
    x = np.array([1, 2, 3, 4], np.float32)

    def call(model: str) -> httpclient.InferResult:
        name = httpclient.InferInput("MODEL", [1], "BYTES")
        name.set_data_from_numpy(np.array([model.encode()], dtype=np.object_))
        value = httpclient.InferInput("X", [4], "FP32")
        value.set_data_from_numpy(x)
        return http.infer("bls", [name, value])

    np.testing.assert_array_equal(call("add_sub").as_numpy("Y"), x + x)
    np.testing.assert_array_equal(call("repeat").as_numpy("Y"), np.full(4, 3 * x[0]))
    with pytest.raises(InferenceServerException, match="Request for unknown model: 'nope'"):
        call("nope")
    value = httpclient.InferInput("X", [4], "FP32")
    value.set_data_from_numpy(x)
    np.testing.assert_array_equal(http.infer("bls_async", [value]).as_numpy("Y"), x + x)


def repeat_inputs(n: int, value: float) -> list[grpcclient.InferInput]:
    count = grpcclient.InferInput("N", [1], "INT32")
    count.set_data_from_numpy(np.array([n], dtype=np.int32))
    val = grpcclient.InferInput("VALUE", [1], "FP32")
    val.set_data_from_numpy(np.array([value], dtype=np.float32))
    return [count, val]


def test_decoupled_over_grpc_stream(grpc: grpcclient.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    grpc.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for request_id, n in (("a", 3), ("b", 0), ("c", 1), ("d", -1)):
            grpc.async_stream_infer("repeat", repeat_inputs(n, 5.0), request_id=request_id)
        got: dict[str, list[int]] = {}
        errors = []
        for _ in range(5):  # 3 + 0 + 1 answers, one error; no message for N = 0
            result, error = answers.get(timeout=30)
            if error is not None:
                errors.append(str(error))
                continue
            response = result.get_response()  # type: ignore[attr-defined]
            got.setdefault(response.id, []).append(int(result.as_numpy("INDEX")[0]))  # type: ignore[attr-defined]
    finally:
        grpc.stop_stream()
    assert got == {"a": [0, 1, 2], "c": [0]}
    assert len(errors) == 1 and "N must be >= 0" in errors[0]
    assert answers.empty()


def test_decoupled_over_rest_needs_exactly_one_answer(server: ServerProcess) -> None:
    def body(n: int) -> bytes:
        return json.dumps(
            {
                "inputs": [
                    {"name": "N", "shape": [1], "datatype": "INT32", "data": [n]},
                    {"name": "VALUE", "shape": [1], "datatype": "FP32", "data": [2.5]},
                ]
            }
        ).encode()

    status, _, data = server.request("POST", "/v2/models/repeat/infer", body(1))
    assert status == 200, data
    assert json.loads(data)["outputs"][0]["data"] == [2.5]
    status, _, data = server.request("POST", "/v2/models/repeat/infer", body(2))
    assert status == 400 and b"ModelStreamInfer" in data


def test_custom_metrics_on_metrics_endpoint(
    http: httpclient.InferenceServerClient, server: ServerProcess
) -> None:
    for value in (1.0, 2.0, 7.0):
        x = httpclient.InferInput("X", [1], "FP32")
        x.set_data_from_numpy(np.array([value], np.float32))
        http.infer("counters", [x])
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics").read().decode()
    assert "# HELP test_requests_total Requests seen" in text
    assert "# TYPE test_requests_total counter" in text
    assert 'test_requests_total{model="counters",version="1"} 3' in text  # both instances
    assert 'test_last_x{model="counters",version="1"} 7' in text
    assert "conveyor_python_worker_restarts_total" in text


def test_native_model_batches_and_fails_one_request(
    http: httpclient.InferenceServerClient,
) -> None:
    x = httpclient.InferInput("x", [2, 3], "FP32")
    x.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    result = http.infer("native", [x])
    np.testing.assert_array_equal(result.as_numpy("y"), 2 * np.arange(6).reshape(2, 3) + 10)
    bad = httpclient.InferInput("x", [1, 3], "FP32")
    bad.set_data_from_numpy(-np.ones((1, 3), np.float32))
    with pytest.raises(InferenceServerException, match="x must not be negative"):
        http.infer("native", [bad])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "INPUT0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}, "FP64"),
        ({"name": "INPUT0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}, "shape"),
        ({"name": "INPUT0", "shape": [1, 4], "datatype": "BYTES", "data": ["a"] * 4}, "BYTES"),
        (None, "lacks"),
    ],
)
def test_bad_input_is_400_before_the_worker(
    server: ServerProcess, body: dict[str, object] | None, message: str
) -> None:
    other = {"name": "INPUT1", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    inputs = [other] if body is None else [body, other]
    status, _, data = server.request(
        "POST", "/v2/models/add_sub/infer", json.dumps({"inputs": inputs}).encode()
    )
    assert status == 400 and message in json.loads(data)["error"], data


@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [
        (1, 500, "ValueError: mode 1 asked me to fail"),
        (2, 500, "execute returned 0 responses for 1 requests"),
        (3, 500, "output 'OUT' is BYTES, but the model's config says FP32"),
        (6, 400, "mode 6 is not a valid mode"),
    ],
)
def test_a_misbehaving_model_fails_that_request_only(
    server: ServerProcess, mode: int, status: int, message: str
) -> None:
    def call(m: int) -> tuple[int, bytes]:
        body = {"inputs": [{"name": "MODE", "shape": [1, 1], "datatype": "INT32", "data": [m]}]}
        got, _, data = server.request("POST", "/v2/models/faulty/infer", json.dumps(body).encode())
        return got, data

    got, data = call(mode)
    assert got == status and message in json.loads(data)["error"], data
    assert "faulty" in json.loads(data)["error"]
    got, data = call(8)  # float64 for an FP32 output is cast
    assert got == 200 and json.loads(data)["outputs"][0]["datatype"] == "FP32", data


def test_execution_env_path_picks_the_interpreter(http: httpclient.InferenceServerClient) -> None:
    x = httpclient.InferInput("X", [1], "FP32")
    x.set_data_from_numpy(np.zeros(1, np.float32))
    exe = http.infer("envcheck", [x]).as_numpy("EXE")[0].decode()
    assert exe.endswith("envcheck/env/bin/python3"), exe


def test_initialize_failure_is_a_load_error(server: ServerProcess) -> None:
    status, _, data = server.request("POST", "/v2/repository/index", b"{}")
    rows = {r["name"]: r for r in json.loads(data)}
    assert rows["init_fails"]["state"] == "UNAVAILABLE"
    assert "RuntimeError: the weights file is corrupt" in rows["init_fails"]["reason"]
    assert rows["add_sub"]["state"] == "READY"
    status, _, data = server.request("GET", "/v2/models/init_fails/ready")
    assert status == 503


def test_no_arena_in_dev_shm(server: ServerProcess) -> None:
    """Arenas are memfds: nothing of ours under /dev/shm while serving."""
    if os.path.isdir("/dev/shm"):
        assert not [n for n in os.listdir("/dev/shm") if "conveyor" in n]


def test_grpc_config_shows_the_transaction_policy(grpc: grpcclient.InferenceServerClient) -> None:
    config = grpc.get_model_config("repeat", as_json=True)["config"]
    assert config["model_transaction_policy"] == {"decoupled": True}
    assert config["backend"] == "python"
