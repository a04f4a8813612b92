"""Bad input over real HTTP: each a clear 4xx naming the problem, and the server
answers the next good request."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.e2e.utils import ServerProcess
from tests.mutate import mutations

pytestmark = pytest.mark.e2e

GOOD = orjson.dumps(
    {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
        ]
    }
)


SIMPLE_ONLY = ("--model-control-mode", "explicit", "--load-model", "simple")


@pytest.fixture(scope="module")
def small(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with a 4 KiB request limit."""
    logs = tmp_path_factory.mktemp("logs")
    proc = ServerProcess(demo_repo, *SIMPLE_ONLY, "--max-request-bytes", "4KiB", log_dir=logs)
    proc.start()
    yield proc
    assert proc.stop() == 0


def simple_body(**override: object) -> bytes:
    doc = orjson.loads(GOOD)
    doc["inputs"][0].update(override)
    return orjson.dumps(doc)


def binary_body(size: int, actual: int) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [1, 16],
                    "datatype": "INT32",
                    "parameters": {"binary_data_size": size},
                },
                {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
            ]
        }
    )
    return header + bytes(actual), {"inference-header-content-length": str(len(header))}


CASES = [
    ("malformed JSON", "/v2/models/simple/infer", b'{"inputs": [', {}, 400, "malformed JSON"),
    (
        "wrong datatype",
        "/v2/models/simple/infer",
        simple_body(datatype="FP32"),
        {},
        400,
        "input 'INPUT0': expected datatype INT32, got FP32",
    ),
    (
        "wrong shape",
        "/v2/models/simple/infer",
        simple_body(shape=[1, 8], data=list(range(8))),
        {},
        400,
        "input 'INPUT0': expected shape [-1,16], got [1,8]",
    ),
    (
        "missing input",
        "/v2/models/simple/infer",
        orjson.dumps({"inputs": orjson.loads(GOOD)["inputs"][:1]}),
        {},
        400,
        "expects input 'INPUT1'",
    ),
    (
        "unknown output",
        "/v2/models/simple/infer",
        orjson.dumps({**orjson.loads(GOOD), "outputs": [{"name": "NOPE"}]}),
        {},
        400,
        "unknown output 'NOPE'",
    ),
    (
        "BYTES for INT32",
        "/v2/models/simple/infer",
        simple_body(datatype="BYTES", data=["a"] * 16),
        {},
        400,
        "expected datatype INT32, got BYTES",
    ),
    (
        "strings in INT32",
        "/v2/models/simple/infer",
        simple_body(data=["a"] * 16),
        {},
        400,
        "INT32 cannot hold strings",
    ),
    (
        "binary size disagrees",
        "/v2/models/simple/infer",
        *binary_body(60, 60),
        400,
        "binary_data_size is 60 bytes, but shape [1, 16] of INT32 needs 64",
    ),
    (
        "truncated binary body",
        "/v2/models/simple/infer",
        *binary_body(64, 40),
        400,
        "runs past the end of the body",
    ),
    (
        "unknown model",
        "/v2/models/ghost/infer",
        GOOD,
        {},
        404,
        "Request for unknown model: 'ghost' is not found",
    ),
    ("unknown version", "/v2/models/simple/versions/9/infer", GOOD, {}, 404, "unknown version '9'"),
    ("unknown route", "/v3/anything", GOOD, {}, 404, "no route"),
    (
        "oversized body",
        "/v2/models/simple/infer",
        b"x" * 5000,
        {},
        413,
        "exceeds the limit of 4096 bytes",
    ),
]


@pytest.mark.parametrize(
    ("name", "path", "body", "headers", "status", "message"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_request_then_good_one(
    small: ServerProcess,
    name: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    got, _, raw = small.request("POST", path, body, headers)
    assert got == status, raw
    assert message in orjson.loads(raw)["error"]
    ok, _, raw = small.request("POST", "/v2/models/simple/infer", GOOD)
    assert ok == 200
    assert orjson.loads(raw)["outputs"][0]["data"] == list(range(1, 17))


def test_wrong_method_is_405(small: ServerProcess) -> None:
    status, _, raw = small.request("GET", "/v2/models/simple/infer")
    assert status == 405 and "use POST" in orjson.loads(raw)["error"]


def test_client_that_hangs_up_mid_body_does_not_hurt(small: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", small.port)) as s:
        s.sendall(
            b"POST /v2/models/simple/infer HTTP/1.1\r\nhost: x\r\n"
            b"content-length: 1000\r\n\r\n" + GOOD[:50]
        )
    assert small.request("POST", "/v2/models/simple/infer", GOOD)[0] == 200


def test_not_loaded_model_in_explicit_mode(small: ServerProcess) -> None:
    status, _, _raw = small.request("POST", "/v2/models/mlp/infer", GOOD)
    assert status == 404
    index = {
        row["name"]: row for row in orjson.loads(small.request("POST", "/v2/repository/index")[2])
    }
    assert index["simple"]["state"] == "READY"  # every model directory is listed, as by Triton
    assert index["mlp"] == {"name": "mlp", "version": "", "state": "", "reason": ""}


def test_mutated_bodies_on_every_post_route_are_never_a_500(
    demo_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Valid bodies for each POST route, mutated at random (seeded, bounded): every answer
    is a success or a 4xx, never an internal error; a 503 only for a request whose own
    `timeout` parameter ran out. Then the server still answers a good request."""
    proc = ServerProcess(demo_repo, *SIMPLE_ONLY, log_dir=tmp_path_factory.mktemp("logs"))
    proc.start()
    valid = {
        "/v2/models/simple/infer": {
            **orjson.loads(GOOD),
            "id": "r",
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": False}}],
            "parameters": {"priority": 0, "timeout": 1_000_000, "binary_data_output": False},
        },
        "/v2/repository/index": {"ready": True},
        "/v2/repository/models/simple/routing": {
            "version_labels": {"stable": 1},
            "traffic_split": {"1": 100},
        },
        "/v2/logging": {"log_level": "INFO", "access_log": False},
        "/v2/systemsharedmemory/region/r/register": {"key": "/none", "offset": 0, "byte_size": 8},
        "/v1/models/simple:predict": {
            "instances": [{"INPUT0": list(range(16)), "INPUT1": [1] * 16}]
        },
        "/v2/repository/models/simple/load": {"parameters": {"config": {"max_batch_size": 8}}},
    }
    rng = np.random.default_rng(7)
    try:
        for i in range(700):
            path, doc = list(valid.items())[i % len(valid)]
            body = orjson.dumps(mutations(doc, rng))
            status, _, raw = proc.request("POST", path, body)
            timed_out = status == 503 and b"timed out" in raw
            assert status < 500 or timed_out, (path, body, status, raw)
        ok, _, raw = proc.request("POST", "/v2/models/simple/infer", GOOD)
        assert ok == 200, raw
    finally:
        assert proc.stop() == 0
