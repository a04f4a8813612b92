"""The scheduler on a real event loop with the fake runtime: splitting, isolation,
growth while busy, timeouts, cancellation."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from conveyor.batching.scheduler import Scheduler
from conveyor.errors import InternalError, RequestTimeoutError
from conveyor.repository.config import DynamicBatching, ModelConfig, TensorConfig
from tests.fakes import FakeBackend, FakeRuntime


def make(backend: FakeBackend, instances: int = 1, **db: object) -> Scheduler:
    config = ModelConfig(
        name="m",
        backend="fake",
        max_batch_size=8,
        inputs=[TensorConfig("x", "FP32", [4])],
        outputs=[TensorConfig("y", "FP32", [4])],
        dynamic_batching=DynamicBatching(**db),  # type: ignore[arg-type]
    )
    return Scheduler(config, 1, [FakeRuntime(backend) for _ in range(instances)])


async def submit(s: Scheduler, x: np.ndarray, **kw: object) -> dict[str, np.ndarray]:
    return await s.submit({"x": x}, ["y"], x.shape[0], (4,), **kw)  # type: ignore[arg-type]


def rows(n: int, value: float) -> np.ndarray:
    return np.full((n, 4), value, np.float32)


async def test_batch_grows_while_the_instance_is_busy_and_splits_back_exactly() -> None:
    backend = FakeBackend()
    s = make(backend)
    s.start(asyncio.get_running_loop())
    backend.gate.clear()
    first = asyncio.ensure_future(submit(s, rows(1, 1)))
    await asyncio.sleep(0.05)  # the first batch is executing (blocked on the gate)
    rest = [asyncio.ensure_future(submit(s, rows(n, float(n)))) for n in (1, 2, 3)]
    await asyncio.sleep(0.05)
    backend.gate.set()
    out = await asyncio.gather(first, *rest)
    assert backend.batches == [1, 6]
    for result, n in zip(out[1:], (1, 2, 3), strict=True):
        np.testing.assert_array_equal(result["y"], rows(n, 2.0 * n))
    s.close()


async def test_a_bad_request_fails_alone_and_its_batch_mates_succeed() -> None:
    backend = FakeBackend()
    s = make(backend)
    s.start(asyncio.get_running_loop())
    backend.gate.clear()
    blocker = asyncio.ensure_future(submit(s, rows(1, 0)))
    await asyncio.sleep(0.05)
    good1 = asyncio.ensure_future(submit(s, rows(1, 1)))
    bad = asyncio.ensure_future(submit(s, rows(1, backend.poison)))
    good2 = asyncio.ensure_future(submit(s, rows(2, 3)))
    await asyncio.sleep(0.05)
    backend.gate.set()
    await blocker
    np.testing.assert_array_equal((await good1)["y"], rows(1, 2))
    np.testing.assert_array_equal((await good2)["y"], rows(2, 6))
    with pytest.raises(InternalError, match="failed to execute"):
        await bad
    s.close()


async def test_queued_request_times_out_with_a_clear_error() -> None:
    backend = FakeBackend()
    s = make(backend)
    s.start(asyncio.get_running_loop())
    backend.gate.clear()
    blocker = asyncio.ensure_future(submit(s, rows(1, 0)))
    await asyncio.sleep(0.02)
    with pytest.raises(RequestTimeoutError, match=r"timed out after \d+ µs"):
        await submit(s, rows(1, 1), timeout_us=20_000)
    backend.gate.set()
    await blocker
    s.close()


async def test_cancelled_request_leaves_the_queue() -> None:
    backend = FakeBackend()
    s = make(backend)
    s.start(asyncio.get_running_loop())
    backend.gate.clear()
    blocker = asyncio.ensure_future(submit(s, rows(1, 0)))
    await asyncio.sleep(0.02)
    gone = asyncio.ensure_future(submit(s, rows(1, 1)))
    await asyncio.sleep(0.02)
    gone.cancel()
    await asyncio.sleep(0.01)
    assert len(s.queue) == 0
    backend.gate.set()
    await blocker
    assert backend.batches == [1]
    s.close()


async def test_two_instances_run_batches_concurrently() -> None:
    backend = FakeBackend(delay_s=0.1)
    s = make(backend, instances=2)
    s.start(asyncio.get_running_loop())
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(submit(s, rows(1, 1)), submit(s, rows(1, 2)))
    assert loop.time() - start < 0.19  # two 0.1 s batches side by side, not in series
    s.close()


class _WrongRows(FakeRuntime):
    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        return {"y": np.zeros((1, 4), np.float32)}


async def test_output_rows_must_match_the_batch() -> None:
    config = ModelConfig(
        name="m",
        backend="fake",
        max_batch_size=8,
        inputs=[TensorConfig("x", "FP32", [4])],
        outputs=[TensorConfig("y", "FP32", [4])],
        dynamic_batching=DynamicBatching(),
    )
    s = Scheduler(config, 1, [_WrongRows(FakeBackend())])
    s.start(asyncio.get_running_loop())
    with pytest.raises(InternalError):
        await submit(s, rows(3, 1))
    s.close()


@pytest.mark.parametrize("preserve", [False, True])
async def test_preserve_ordering(preserve: bool) -> None:
    backend = FakeBackend()
    s = make(backend, instances=2, preserve_ordering=preserve)
    s.start(asyncio.get_running_loop())
    finished: list[str] = []

    async def call(name: str, value: float) -> None:
        await submit(s, rows(1, value))
        finished.append(name)

    slow = asyncio.ensure_future(call("slow", backend.slow))
    await asyncio.sleep(0.01)  # the slow one is executing on one instance
    await asyncio.gather(slow, call("fast", 1.0))
    assert finished == (["slow", "fast"] if preserve else ["fast", "slow"])
    s.close()
