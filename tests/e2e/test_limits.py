"""Request limits on a real server: each one exceeded is a 4xx that names it, over REST
(V2 and TF Serving) and gRPC, and the next request is served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = [
        "--model-control-mode", "explicit", "--load-model", "linear",
        "--max-header-bytes", "2KiB", "--max-tensors", "2", "--max-tensor-elements", "1000",
        "--max-bytes-element", "1KiB", "--max-json-depth", "8",
    ]  # fmt: skip
    proc = ServerProcess(demo_repo, *args, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def x_input(rows: int = 1, name: str = "x") -> dict[str, object]:
    return {"name": name, "shape": [rows, 256], "datatype": "FP32", "data": [0.5] * 256 * rows}


def infer(server: ServerProcess, doc: object, **headers: str) -> tuple[int, str]:
    status, _, body = server.request(
        "POST", "/v2/models/linear/infer", json.dumps(doc).encode(), headers
    )
    return status, body.decode()


def served(server: ServerProcess) -> bool:
    status, _ = infer(server, {"inputs": [x_input()]})
    return status == 200


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"inputs": [x_input(1, n) for n in "xyz"]}, "3 inputs; the limit is 2 (--max-tensors)"),
        (
            {"inputs": [x_input()], "outputs": [{"name": n} for n in "abc"]},
            "asks for 3 outputs; the limit is 2",
        ),
        ({"inputs": [x_input(4)]}, "input 'x' has 1024 elements; the limit is 1000"),
        (
            {"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES", "data": ["a" * 2000]}]},
            "element 0 is 2000 bytes; the limit for one BYTES element is 1024",
        ),
        (
            {
                "inputs": [x_input()],
                "parameters": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {}}}}}}}},
            },
            "nests deeper than 8 levels (--max-json-depth)",
        ),
    ],
)
def test_each_limit_is_a_400_naming_it(server: ServerProcess, doc: object, message: str) -> None:
    status, body = infer(server, doc)
    assert status == 400 and message in body, body
    assert served(server)


def test_oversized_headers_are_431(server: ServerProcess) -> None:
    status, body = infer(server, {"inputs": [x_input()]}, **{"x-padding": "p" * 3000})
    assert status == 431 and "exceed 2048 bytes (--max-header-bytes)" in body
    assert served(server)


def test_tf_serving_bodies_are_held_to_the_depth_limit(server: ServerProcess) -> None:
    deep: object = [0.5]
    for _ in range(10):
        deep = [deep]
    status, _, body = server.request(
        "POST", "/v1/models/linear:predict", json.dumps({"instances": deep}).encode()
    )
    assert status == 400 and b"--max-json-depth" in body
    assert served(server)


def test_grpc_requests_are_held_to_the_same_limits(server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        tensors = []
        for name in "xyz":
            t = grpcclient.InferInput(name, [1, 256], "FP32")
            t.set_data_from_numpy(np.ones((1, 256), np.float32))
            tensors.append(t)
        with pytest.raises(InferenceServerException, match="3 inputs; the limit is 2"):
            client.infer("linear", tensors)
        assert client.infer("linear", tensors[:1]).as_numpy("y").shape == (1, 256)
    finally:
        client.close()
