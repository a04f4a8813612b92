"""The scheduler with runtimes that see requests (Python models): a batch is handed over
as its requests, one per instance at a time; an instance that is down gets nothing;
requests wait for a restart under way and fail at once when every instance gave up."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from conveyor.batching.scheduler import Scheduler
from conveyor.errors import UnavailableError
from conveyor.repository.config import DynamicBatching, ModelConfig, TensorConfig
from conveyor.runtimes.base import NotStartedError, RequestContext
from tests.fakes import FakeRequestRuntime


def make(*runtimes: FakeRequestRuntime) -> Scheduler:
    config = ModelConfig(
        name="py",
        backend="python",
        max_batch_size=8,
        inputs=[TensorConfig("x", "FP32", [4])],
        outputs=[TensorConfig("y", "FP32", [4])],
        dynamic_batching=DynamicBatching(),
    )
    s = Scheduler(config, 1, list(runtimes))
    s.start(asyncio.get_running_loop())
    return s


async def submit(s: Scheduler, value: float, rid: str = "") -> dict[str, np.ndarray]:
    x = np.full((1, 4), value, np.float32)
    return await s.submit({"x": x}, ["y"], 1, (4,), context=RequestContext(rid))


async def test_requests_waiting_while_busy_go_as_one_batch_of_requests() -> None:
    rt = FakeRequestRuntime()
    s = make(rt)
    assert s.request_mode and s.ready
    assert rt.release is not None
    rt.release.clear()
    first = asyncio.ensure_future(submit(s, 1))
    while not rt.batches:
        await asyncio.sleep(0)
    rest = [asyncio.ensure_future(submit(s, v)) for v in (2, 3, rt.poison)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert rt.batches == [1]  # one batch per instance at a time
    rt.release.set()
    out = await asyncio.gather(first, *rest, return_exceptions=True)
    assert rt.batches == [1, 3]
    np.testing.assert_array_equal(out[1]["y"], np.full((1, 4), 4.0))  # type: ignore[index]
    assert isinstance(out[3], Exception)  # the poisoned one alone


async def test_an_instance_that_is_down_gets_no_batch() -> None:
    a, b = FakeRequestRuntime(), FakeRequestRuntime()
    s = make(a, b)
    a.down("its worker process was killed by SIGKILL; restarting")
    assert not s.ready
    for v in range(4):
        await submit(s, v)
    assert a.batches == [] and len(b.batches) == 4


async def test_requests_wait_for_a_restart_under_way() -> None:
    rt = FakeRequestRuntime()
    s = make(rt)
    rt.down("restarting")
    pending = asyncio.ensure_future(submit(s, 5))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not pending.done() and rt.batches == []
    rt.back()  # the new worker is up: what waited is served
    np.testing.assert_array_equal((await pending)["y"], np.full((1, 4), 10.0))


async def test_requests_fail_at_once_when_every_instance_gave_up() -> None:
    rt = FakeRequestRuntime()
    s = make(rt)
    rt.down("restarting")
    waiting = asyncio.ensure_future(submit(s, 1))
    await asyncio.sleep(0)
    rt.down("restarting its worker failed: ImportError: no module named x", gave_up=True)
    s._wake()
    with pytest.raises(UnavailableError, match="restarting its worker failed"):
        await waiting
    with pytest.raises(UnavailableError, match="is not ready: restarting its worker failed"):
        await submit(s, 2)


def make_unbatched(*runtimes: FakeRequestRuntime) -> Scheduler:
    config = ModelConfig(
        name="py0",
        backend="python",
        max_batch_size=0,
        inputs=[TensorConfig("x", "FP32", [1, 4])],
        outputs=[TensorConfig("y", "FP32", [1, 4])],
    )
    s = Scheduler(config, 1, list(runtimes))
    s.start(asyncio.get_running_loop())
    return s


async def test_without_batching_an_instance_holds_a_second_request() -> None:
    """So its worker starts the next one the moment the first is done."""
    rt = FakeRequestRuntime()
    s = make_unbatched(rt)
    assert rt.release is not None
    rt.release.clear()
    calls = [asyncio.ensure_future(submit(s, v)) for v in (1, 2, 3)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert rt.batches == [1, 1]  # two handed over, the third waits in the queue
    rt.release.set()
    out = await asyncio.gather(*calls)
    assert rt.batches == [1, 1, 1]
    assert [float(o["y"][0, 0]) for o in out] == [2.0, 4.0, 6.0]


async def test_a_batch_its_instance_never_started_is_queued_again() -> None:
    a, b = FakeRequestRuntime(), FakeRequestRuntime()
    s = make_unbatched(a, b)
    attempts: list[str] = []

    async def dies_before_starting(batch: list[object]) -> list[object]:
        attempts.append("a")
        a.down("its worker process was killed", gave_up=False)
        raise NotStartedError("its worker process was killed")

    a.execute = dies_before_starting  # type: ignore[method-assign, assignment]
    out = await asyncio.gather(*(submit(s, v) for v in (1, 2)))
    assert [float(o["y"][0, 0]) for o in out] == [2.0, 4.0]  # nothing lost
    assert attempts and len(b.batches) == 2
