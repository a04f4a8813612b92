"""The V2 REST routes in-process (no socket), over the fake backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from conveyor.dataplane import DataPlane
from conveyor.http.rest import RestApp
from conveyor.http.server import HttpRequest
from conveyor.repository.manager import ModelRepository
from tests.fakes import FakeBackend, write_model

CONFIG = "backend: fake\nmax_batch_size: 4\ndynamic_batching: {}\nversion_policy: {all: {}}\n"
INFER = orjson.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
)


async def app(tmp_path: Path, ready: bool = True) -> RestApp:
    write_model(tmp_path, "m", CONFIG, versions=(1, 2))
    repo = ModelRepository(tmp_path, {"fake": FakeBackend()})
    repo.load()
    repo.start(asyncio.get_running_loop())
    plane = DataPlane(repo)
    plane.ready = ready
    return RestApp(plane)


async def call(a: RestApp, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    resp = await a(HttpRequest(method, path, "", {}, body))
    return resp.status, b"".join(bytes(c) for c in resp.body)


async def test_routes(tmp_path: Path) -> None:
    a = await app(tmp_path)
    assert (await call(a, "GET", "/v2/health/live"))[0] == 200
    assert (await call(a, "GET", "/v2/health/ready"))[0] == 200
    status, body = await call(a, "GET", "/v2/models/m/versions/1")
    assert status == 200 and orjson.loads(body)["versions"] == ["1", "2"]
    status, body = await call(a, "POST", "/v2/models/m/versions/1/infer", INFER)
    assert status == 200 and orjson.loads(body)["model_version"] == "1"
    status, body = await call(a, "POST", "/v2/models/m/infer/", INFER)  # trailing slash
    assert status == 200 and orjson.loads(body)["model_version"] == "2"
    assert orjson.loads(body)["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]
    status, body = await call(a, "GET", "/v2/models/m/config")
    assert orjson.loads(body)["backend"] == "fake"
    a.dataplane.repository.close()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 404),
        ("GET", "/v2/nope", 404),
        ("GET", "/v2/models/m/nope", 404),
        ("POST", "/v2", 405),
        ("GET", "/v2/models/m/infer", 405),
        ("GET", "/v2/models/m/versions/x", 404),
        ("GET", "/v2/models/q%20r", 404),
    ],
)
async def test_bad_routes(tmp_path: Path, method: str, path: str, status: int) -> None:
    a = await app(tmp_path)
    got, body = await call(a, method, path)
    assert got == status and "error" in orjson.loads(body)
    a.dataplane.repository.close()


async def test_not_ready_is_503(tmp_path: Path) -> None:
    a = await app(tmp_path, ready=False)
    assert (await call(a, "GET", "/v2/health/live"))[0] == 200
    assert (await call(a, "GET", "/v2/health/ready"))[0] == 503
    assert (await call(a, "GET", "/v2/models/m/ready"))[0] == 503
    a.dataplane.repository.close()


async def test_bad_header_length(tmp_path: Path) -> None:
    a = await app(tmp_path)
    resp = await a(
        HttpRequest(
            "POST", "/v2/models/m/infer", "", {"inference-header-content-length": "abc"}, INFER
        )
    )
    assert resp.status == 400
    a.dataplane.repository.close()
