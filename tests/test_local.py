"""The in-process API: the same data plane from threads and from other event loops."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import conveyor
from conveyor import Conveyor, InvalidRequestError
from tests.fakes import FakeBackend, write_model

CONFIG = "backend: fake\nmax_batch_size: 8\ndynamic_batching: {}\n"


def test_sync_infer_from_many_threads(tmp_path: Path) -> None:
    """Callers on 8 threads: every answer is its own; those that arrive while the instance
    is busy are batched together. Driven by the backend's gate, not by timing."""
    write_model(tmp_path, "m", CONFIG)
    backend = FakeBackend()
    backend.gate.clear()  # the instance blocks until the test opens the gate
    with Conveyor(tmp_path, backends={"fake": backend}) as cv:
        queue = cv.dataplane.repository.get("m").scheduler.queue

        def call(i: int) -> np.ndarray:
            return cv.infer("m", {"x": np.full((1, 4), i, np.float32)})["y"]

        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(call, 0)
            while not backend.batches:  # the first request is executing
                time.sleep(0.001)
            rest = [pool.submit(call, i) for i in range(1, 8)]
            while len(queue) < 7:  # the other seven wait behind it
                time.sleep(0.001)
            backend.gate.set()
            results = [first.result(30), *(f.result(30) for f in rest)]
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, np.full((1, 4), 2 * i, np.float32))
    assert backend.batches == [1, 7]  # the seven that waited went as one batch


def test_async_infer_from_another_loop(tmp_path: Path) -> None:
    write_model(tmp_path, "m", CONFIG)

    async def main() -> list[np.ndarray]:
        async with Conveyor(tmp_path, backends={"fake": FakeBackend()}) as cv:
            outs = await asyncio.gather(
                *(cv.infer_async("m", {"x": np.full((2, 4), i, np.float32)}) for i in range(10))
            )
            return [o["y"] for o in outs]

    for i, y in enumerate(asyncio.run(main())):
        np.testing.assert_array_equal(y, np.full((2, 4), 2 * i, np.float32))


def test_errors_are_the_public_hierarchy(tmp_path: Path) -> None:
    write_model(tmp_path, "m", CONFIG)
    with Conveyor(tmp_path, backends={"fake": FakeBackend()}) as cv:
        with pytest.raises(InvalidRequestError, match="expected datatype FP32"):
            cv.infer("m", {"x": np.ones((1, 4), np.int32)})
        assert cv.models()[0]["state"] == "READY"


def test_not_started_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        Conveyor(tmp_path).infer("m", {})


def test_public_surface() -> None:
    assert set(conveyor.__all__) == {
        "Conveyor",
        "ConveyorError",
        "InferRequest",
        "InferResponse",
        "InternalError",
        "InvalidRequestError",
        "ModelNotFoundError",
        "NotFoundError",
        "PayloadTooLargeError",
        "QueueFullError",
        "RequestTimeoutError",
        "RequestedOutput",
        "UnavailableError",
        "__version__",
    }
    for name in conveyor.__all__:
        assert hasattr(conveyor, name)


def test_python_models_in_process(tmp_path: Path) -> None:
    """The in-process API serves Python models too (their workers are processes)."""
    import shutil

    models = Path(__file__).parent / "runtimes" / "python" / "models"
    shutil.copytree(models / "native", tmp_path / "native")
    with Conveyor(tmp_path) as cv:
        out = cv.infer("native", {"x": np.ones((2, 3), np.float32)})
    np.testing.assert_array_equal(out["y"], np.full((2, 3), 12.0))
