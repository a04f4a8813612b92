"""The data plane's validation: every mismatch is a 400 that names input, expected, got."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import orjson
import pytest

from conveyor.dataplane import DataPlane
from conveyor.errors import InvalidRequestError, ModelLoadError, ModelNotFoundError, NotFoundError
from conveyor.repository.manager import ModelRepository
from conveyor.types import InferRequest, RequestedOutput
from tests.fakes import FakeBackend, write_model

CONFIG = """
backend: fake
max_batch_size: 4
input: [{name: x, data_type: TYPE_FP32, dims: [4]}]
output: [{name: y, data_type: TYPE_FP32, dims: [4]}]
dynamic_batching: {}
"""


async def plane(tmp_path: Path, config: str = CONFIG) -> DataPlane:
    write_model(tmp_path, "m", config)
    repo = ModelRepository(tmp_path, {"fake": FakeBackend()})
    repo.load()
    repo.start(asyncio.get_running_loop())
    dp = DataPlane(repo)
    dp.ready = True
    return dp


def request(x: object, **kw: object) -> InferRequest:
    return InferRequest("m", {"x": x}, **kw)  # type: ignore[dict-item, arg-type]


async def test_infer_and_metadata(tmp_path: Path) -> None:
    dp = await plane(tmp_path)
    out = await dp.infer(request(np.ones((2, 4), np.float32)))
    np.testing.assert_array_equal(out.outputs["y"], np.full((2, 4), 2, np.float32))
    assert out.version == "1"
    meta = dp.model_metadata("m")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert dp.model_config("m")["max_batch_size"] == 4
    assert dp.repository_index() == [{"name": "m", "version": "1", "state": "READY", "reason": ""}]
    dp.repository.close()


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (request(np.ones((1, 4), np.int64)), "input 'x': expected datatype FP32, got INT64"),
        (request(np.ones((1, 5), np.float32)), r"input 'x': expected shape \[-1,4\], got \[1,5\]"),
        (request(np.ones(4, np.float32)), r"expected shape \[-1,4\], got \[4\]"),
        (request(np.ones((5, 4), np.float32)), "batch size 5 is outside 1..4"),
        (request(np.ones((1, 4), object)), "expected datatype FP32, got BYTES"),
        (InferRequest("m", {}), "expects input 'x', which the request lacks"),
        (
            InferRequest("m", {"x": np.ones((1, 4), np.float32), "z": np.ones(1)}),
            "unknown input 'z'",
        ),
        (
            request(np.ones((1, 4), np.float32), outputs=[RequestedOutput("nope")]),
            "unknown output 'nope'",
        ),
        (
            request(np.ones((1, 4), np.float32), parameters={"priority": -1}),
            "parameter 'priority' must be a non-negative integer",
        ),
        (
            request(np.ones((1, 4), np.float32), parameters={"timeout": "soon"}),
            "parameter 'timeout'",
        ),
    ],
)
async def test_bad_requests_are_400_naming_the_problem(
    tmp_path: Path, req: InferRequest, message: str
) -> None:
    dp = await plane(tmp_path)
    with pytest.raises(InvalidRequestError, match=message):
        await dp.infer(req)
    dp.repository.close()


async def test_unknown_model_and_version_are_404(tmp_path: Path) -> None:
    dp = await plane(tmp_path)
    with pytest.raises(
        ModelNotFoundError, match=r"^Request for unknown model: 'ghost' is not found$"
    ):
        await dp.infer(InferRequest("ghost", {}))
    with pytest.raises(NotFoundError, match="unknown version '7'"):
        await dp.infer(request(np.ones((1, 4), np.float32), version="7"))
    dp.repository.close()


async def test_reshape_in_and_out(tmp_path: Path) -> None:
    config = """
backend: fake
max_batch_size: 4
input: [{name: x, data_type: TYPE_FP32, dims: [2, 2], reshape: {shape: [4]}}]
output: [{name: y, data_type: TYPE_FP32, dims: [2, 2], reshape: {shape: [4]}}]
"""
    dp = await plane(tmp_path, config)
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    out = await dp.infer(request(x))
    np.testing.assert_array_equal(out.outputs["y"], x * 2)
    dp.repository.close()


async def explicit_plane(tmp_path: Path) -> DataPlane:
    """Explicit model control over models m and n, with only m loaded."""
    write_model(tmp_path, "m", CONFIG)
    write_model(tmp_path, "n", CONFIG)
    repo = ModelRepository(tmp_path, {"fake": FakeBackend()})
    repo.load(["m"])
    repo.start(asyncio.get_running_loop())
    dp = DataPlane(repo)
    dp.ready, dp.model_control_mode = True, "explicit"
    return dp


def _row(name: str, version: str = "", state: str = "", reason: str = "") -> dict[str, str]:
    return {"name": name, "version": version, "state": state, "reason": reason}


async def test_the_index_lists_every_model_directory_loaded_or_not(tmp_path: Path) -> None:
    dp = await explicit_plane(tmp_path)
    # as Triton: a model never loaded is its name alone
    assert dp.repository_index() == [_row("m", "1", "READY"), _row("n")]
    write_model(tmp_path, "later", CONFIG)  # the directory is read at each call
    (tmp_path / ".incoming").mkdir()
    assert [r["name"] for r in dp.repository_index()] == ["later", "m", "n"]
    await dp.load_model("n")
    await dp.unload_model("m")
    assert dp.repository_index() == [
        _row("later"),
        _row("m", "", "UNAVAILABLE", "unloaded"),
        _row("n", "1", "READY"),
    ]
    dp.repository.close()


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ('"parameters": {"config": {{"max_batch_size": "16"}}}', "is not JSON"),  # Triton's test
        ("{", "is not JSON"),
        ("[1, 2]", "the config must be a mapping"),
        ('{"backend": "fake", "max_batch_size": "many"}', "must be an integer"),
    ],
)
async def test_an_override_that_does_not_parse_fails_to_load(
    tmp_path: Path, config: str, why: str
) -> None:
    dp = await explicit_plane(tmp_path)
    with pytest.raises(ModelLoadError) as info:
        await dp.load_model("m", config)
    assert info.value.status == 400
    assert info.value.message.startswith("failed to load 'm': ")
    assert why in info.value.message
    assert (await dp.infer(request(np.ones((1, 4), np.float32)))).version == "1"
    dp.repository.close()


@pytest.mark.parametrize("filename", ["../../../../etc/passwd", "/etc/passwd", "../../n/1/x"])
async def test_an_override_naming_a_file_outside_is_refused(tmp_path: Path, filename: str) -> None:
    dp = await explicit_plane(tmp_path)
    override = orjson.dumps({"backend": "fake", "default_model_filename": filename}).decode()
    for name in ("m", "n"):  # reloading a model that serves, and a first load
        with pytest.raises(ModelLoadError) as info:
            await dp.load_model(name, override)
        assert info.value.status == 400
        assert info.value.message == (
            f"failed to load '{name}': default_model_filename {filename!r} leaves the model's "
            "version directory (absolute or with '..'): refused"
        )
    assert (await dp.infer(request(np.ones((1, 4), np.float32)))).version == "1"
    dp.repository.close()
