"""The scheduler on a real event loop with the fake runtime: splitting, isolation,
growth while busy, timeouts, cancellation. Driven by the backend's gates and by waiting
for the state each step needs (a batch executing, requests queued), never by timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

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


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Let the loop and the instance threads run until `condition()` holds; the deadline
    only bounds a hang."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not reached in {timeout_s:g} s"
        await asyncio.sleep(0.001)


async def test_batch_grows_while_the_instance_is_busy_and_splits_back_exactly() -> None:
    backend = FakeBackend()
    s = make(backend)
    s.start(asyncio.get_running_loop())
    backend.gate.clear()
    first = asyncio.ensure_future(submit(s, rows(1, 1)))
    await until(lambda: backend.batches == [1])  # executing, blocked on the gate
    rest = [asyncio.ensure_future(submit(s, rows(n, float(n)))) for n in (1, 2, 3)]
    await until(lambda: len(s.queue) == 3)  # waiting behind it
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
    await until(lambda: backend.batches == [1])
    good1 = asyncio.ensure_future(submit(s, rows(1, 1)))
    bad = asyncio.ensure_future(submit(s, rows(1, backend.poison)))
    good2 = asyncio.ensure_future(submit(s, rows(2, 3)))
    await until(lambda: len(s.queue) == 3)  # the three go as one batch
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
    await until(lambda: backend.batches == [1])  # the instance is busy until the gate opens
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
    await until(lambda: backend.batches == [1])
    gone = asyncio.ensure_future(submit(s, rows(1, 1)))
    await until(lambda: len(s.queue) == 1)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert len(s.queue) == 0
    backend.gate.set()
    await blocker
    assert backend.batches == [1]
    s.close()


async def test_two_instances_run_batches_concurrently() -> None:
    backend = FakeBackend()
    s = make(backend, instances=2)
    s.start(asyncio.get_running_loop())
    backend.gate.clear()
    first = asyncio.ensure_future(submit(s, rows(1, 1)))
    await until(lambda: backend.running == 1)
    # the second goes to the idle instance while the first is still executing: both at
    # once, side by side (in series, the second would wait for the gate behind the first)
    second = asyncio.ensure_future(submit(s, rows(1, 2)))
    await until(lambda: backend.running == 2)
    backend.gate.set()
    out = await asyncio.gather(first, second)
    assert backend.batches == [1, 1] and backend.peak == 2
    np.testing.assert_array_equal(out[1]["y"], rows(1, 4))
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
    backend.hold.clear()  # the first request executes until the test lets it finish
    s = make(backend, instances=2, preserve_ordering=preserve)
    s.start(asyncio.get_running_loop())
    finished: list[str] = []

    async def call(name: str, value: float) -> None:
        await submit(s, rows(1, value))
        finished.append(name)

    slow = asyncio.ensure_future(call("slow", backend.held))
    await until(lambda: backend.running == 1)  # the slow one is executing on one instance
    fast = asyncio.ensure_future(call("fast", 1.0))
    # the fast one executed on the other instance, and the scheduler has its outcome
    await until(lambda: len(backend.batches) == 2 and s.in_flight == 1)
    if preserve:
        for _ in range(10):  # time for an answer to reach its caller, were it released
            await asyncio.sleep(0)
        assert finished == []  # held back until the earlier one is answered
    else:
        await until(lambda: finished == ["fast"])  # answered while the slow one executes
    backend.hold.set()
    await asyncio.gather(slow, fast)
    assert finished == (["slow", "fast"] if preserve else ["fast", "slow"])
    s.close()


async def _cheap(backend: FakeBackend) -> Scheduler:
    """A scheduler whose model has run once and measured cheap: it runs on the loop."""
    s = make(backend)
    s.start(asyncio.get_running_loop())
    await submit(s, rows(1, 0))  # measured: the fake's CPU time is far below 200 µs...
    # ...but not on every loaded machine's first call: the tests must not depend on it
    s._exec_avg_ns = min(s._exec_avg_ns, 1_000)
    await asyncio.sleep(0)  # the end of that loop pass
    backend.batches.clear()
    return s


async def test_a_cheap_idle_model_answers_the_first_request_of_a_pass_at_once() -> None:
    backend = FakeBackend()
    s = await _cheap(backend)
    answers: list[object] = []
    first = s.submit_nowait({"x": rows(1, 1)}, ["y"], 1, (4,), answers.append)
    assert isinstance(first, dict)  # ran on the spot: no queue, no callback
    np.testing.assert_array_equal(first["y"], rows(1, 2))
    assert backend.batches == [1] and answers == []
    s.close()


async def test_requests_arriving_in_one_loop_pass_run_as_one_batch() -> None:
    backend = FakeBackend()
    s = await _cheap(backend)
    answers: list[object] = []
    s.submit_nowait({"x": rows(1, 1)}, ["y"], 1, (4,), answers.append)  # at once
    for n in (1, 2, 3):  # the same pass: queued for the pump at its end
        reply = s.submit_nowait({"x": rows(n, float(n))}, ["y"], n, (4,), answers.append)
        assert not isinstance(reply, dict)
    assert backend.batches == [1] and answers == []
    await until(lambda: len(answers) == 3)
    assert backend.batches == [1, 6]  # one runtime call for the three, not three
    for answer, n in zip(answers, (1, 2, 3), strict=True):
        assert isinstance(answer, dict)
        np.testing.assert_array_equal(answer["y"], rows(n, 2.0 * n))
    # the next pass starts afresh: a lone request is answered at once again
    await asyncio.sleep(0)
    assert isinstance(s.submit_nowait({"x": rows(1, 1)}, ["y"], 1, (4,), answers.append), dict)
    s.close()


async def test_a_withdrawn_reply_leaves_the_queue_and_is_never_called() -> None:
    backend = FakeBackend()
    s = await _cheap(backend)
    answers: list[object] = []
    s.submit_nowait({"x": rows(1, 1)}, ["y"], 1, (4,), answers.append)
    gone = s.submit_nowait({"x": rows(1, 5)}, ["y"], 1, (4,), answers.append)
    kept = s.submit_nowait({"x": rows(1, 7)}, ["y"], 1, (4,), answers.append)
    assert not isinstance(gone, dict) and not isinstance(kept, dict)
    assert gone.cancel() and not gone.cancel()  # once
    assert len(s.queue) == 1
    await until(lambda: len(answers) == 1)
    assert backend.batches == [1, 1]
    np.testing.assert_array_equal(answers[0]["y"], rows(1, 14))  # type: ignore[index]
    s.close()


async def test_an_error_in_one_reply_does_not_fail_its_batch_mates() -> None:
    backend = FakeBackend()
    s = await _cheap(backend)
    answers: list[object] = []

    def broken(_: object) -> None:
        raise RuntimeError("the caller's own bug")

    s.submit_nowait({"x": rows(1, 1)}, ["y"], 1, (4,), answers.append)
    s.submit_nowait({"x": rows(1, 2)}, ["y"], 1, (4,), broken)
    s.submit_nowait({"x": rows(1, 3)}, ["y"], 1, (4,), answers.append)
    await until(lambda: len(answers) == 1)
    np.testing.assert_array_equal(answers[0]["y"], rows(1, 6))  # type: ignore[index]
    s.close()


async def test_an_answered_or_withdrawn_request_leaves_no_reference_cycle() -> None:
    """A queued request and its Reply hold each other until it is settled; after that
    both are freed by reference counting, not left to the cyclic collector (whose
    collections are pauses under load)."""
    import gc
    import weakref

    backend = FakeBackend()
    s = await _cheap(backend)
    answers: list[object] = []

    class Then:  # a caller's callback we can watch being freed
        def __call__(self, outcome: object) -> None:
            answers.append(outcome)

    gc.collect()
    gc.disable()
    try:
        first = s.submit_nowait({"x": rows(1, 1)}, ["y"], 1, (4,), answers.append)
        assert isinstance(first, dict)  # at once
        answered, withdrawn = Then(), Then()
        watched = [weakref.ref(answered), weakref.ref(withdrawn)]
        s.submit_nowait({"x": rows(1, 2)}, ["y"], 1, (4,), answered)
        s.submit_nowait({"x": rows(1, 3)}, ["y"], 1, (4,), withdrawn).cancel()
        del answered, withdrawn
        await until(lambda: len(answers) == 1)
        assert [ref() for ref in watched] == [None, None]  # freed without gc.collect()
    finally:
        gc.enable()
    s.close()


async def test_a_model_that_turns_costly_leaves_the_loop() -> None:
    """Inline runs are measured one in _INLINE_SAMPLE (a thread's CPU clock is a system
    call); the first one after the model measured cheap is, so the next request waits for
    an instance thread instead of running on the loop."""
    backend = FakeBackend()
    s = await _cheap(backend)
    backend.spin_s = 0.002  # 2 ms of CPU per batch: ten times the inline limit
    answers: list[object] = []
    assert isinstance(s.submit_nowait({"x": rows(1, 1)}, ["y"], 1, (4,), answers.append), dict)
    await asyncio.sleep(0)  # the next loop pass
    reply = s.submit_nowait({"x": rows(1, 2)}, ["y"], 1, (4,), answers.append)
    assert not isinstance(reply, dict)  # queued for an instance: not run on the loop
    await until(lambda: len(answers) == 1)
    np.testing.assert_array_equal(answers[0]["y"], rows(1, 4))  # type: ignore[index]
    s.close()
