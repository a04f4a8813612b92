"""Per model version: the batch queue, the instance workers, and the pump that joins them.

Everything here runs on the event loop except `_execute`, which runs on an instance's
worker thread. The pump runs after arrivals (once per loop iteration, so requests that
arrived together are batched together), on every completion and on every timer: expire
timed-out requests, then give each idle instance the next batch.

Inline execution: handing a batch to a worker thread and back costs tens of µs of
wake-ups. When a model's batches take less than `inline_execution_max_us` (a config
parameter, default 200 µs, 0 = never; measured as a moving average), the pump runs them
on the event loop itself: cheaper than the hand-off, and never blocking the loop for
long. Slower models always run on their instance threads. And when such a cheap model
is idle with nothing queued, a request is answered on the spot, without the round trip
through the queue (the lone-request fast path) — the first of a loop pass only: the
others of that pass queue and run as one batch when it ends (`submit_nowait`), which
answers through a callback (`Reply`), not a future, so that the hot path takes no task,
no future and no extra loop pass.

Runtimes that see requests (`RequestRuntime`: Python models, in worker processes) get
each batch as its requests, on a `LoopWorker` (a task awaiting the worker process), and
never run inline. An instance that is not ready (its worker restarting) gets no batch;
requests wait for a restart under way, and fail at once with the reason (503) when every
instance is down and its last restart failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from conveyor.batching.queue import BatchQueue, QueuedRequest
from conveyor.errors import ConveyorError, InternalError, RequestTimeoutError, UnavailableError
from conveyor.metrics.stats import ModelStats
from conveyor.replies import awaiting, settle
from conveyor.repository.config import ModelConfig
from conveyor.runtimes.base import (
    BatchItem,
    NotStartedError,
    RequestContext,
    RequestRuntime,
    Runtime,
)
from conveyor.workers.loop import LoopWorker
from conveyor.workers.threads import ThreadWorker

log = logging.getLogger("conveyor.batching")

Outputs = dict[str, np.ndarray]


# An inline run's cost is measured on one batch in this many: a thread's CPU clock is a
# system call (~1 µs, twice per request on the lone-request path), and wall time would
# count a preemption of the loop's thread as the model's cost.
_INLINE_SAMPLE = 8


@dataclass(slots=True)
class BatchResult:
    """Per request of a batch: its outputs, or the error that failed it alone."""

    results: list[Outputs | BaseException]
    input_ns: int  # gathering the batch's inputs
    infer_ns: int  # the runtime
    output_ns: int  # splitting the outputs back
    cpu_ns: int  # the executing thread's CPU time (excludes waiting for the GIL); -1: not measured


def _concat(batch: list[QueuedRequest]) -> dict[str, np.ndarray]:
    if len(batch) == 1:
        return batch[0].inputs
    return {name: np.concatenate([item.inputs[name] for item in batch]) for name in batch[0].inputs}


def _split(outputs: Outputs, batch: list[QueuedRequest], batched: bool) -> list[Outputs]:
    if not batched:
        return [outputs]
    total = sum([item.rows for item in batch])
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise InternalError(
                f"output '{name}' has {value.shape[0] if value.ndim else 0} rows "
                f"for a batch of {total}"
            )
    if len(batch) == 1:
        return [outputs]
    parts, start = [], 0
    for item in batch:  # each request's rows of the outputs it asked for
        end = start + item.rows
        parts.append({n: outputs[n][start:end] for n in item.outputs if n in outputs})
        start = end
    return parts


class Reply:
    """A queued request's answer, handed to a callback the moment it is settled: the
    stand-in for a future on the hot path (a future's callbacks each cost a loop pass).
    `cancel` withdraws the request."""

    __slots__ = ("_done", "_item", "_queue", "_then")

    def __init__(
        self,
        then: Callable[[Outputs | BaseException], None],
        item: QueuedRequest,
        queue: BatchQueue,
    ) -> None:
        self._then, self._item, self._queue, self._done = then, item, queue, False

    def done(self) -> bool:
        return self._done

    def cancel(self) -> bool:
        if self._done:
            return False
        self._done = True
        self._queue.discard(self._item)
        self._item = self._then = None  # type: ignore[assignment]  # as in _settle
        return True

    def set_result(self, outputs: Outputs) -> None:
        self._settle(outputs)

    def set_exception(self, exc: BaseException) -> None:
        self._settle(exc)

    def _settle(self, outcome: Outputs | BaseException) -> None:
        self._done = True
        then = self._then
        # the request and this reply hold each other: let go, so that both (and the
        # callers' closures behind `then`) are freed at once, not by the collector
        self._item = self._then = None  # type: ignore[assignment]
        try:
            then(outcome)
        except Exception:  # the caller's own failure: never the batch-mates'
            log.exception("answering a request of a batch failed")


class Scheduler:
    def __init__(
        self,
        config: ModelConfig,
        version: int,
        runtimes: list[Runtime],
        clock: Callable[[], int] = time.perf_counter_ns,
        histograms: bool = True,
    ) -> None:
        self.config = config
        self.label = f"{config.name}:{version}"
        self.queue = BatchQueue(config.name, config.max_batch_size, config.dynamic_batching)
        self.batched = config.max_batch_size > 0
        self._clock = clock
        self.request_mode = bool(runtimes) and isinstance(runtimes[0], RequestRuntime)
        self._workers: list[Any] = [
            LoopWorker(rt, f"{config.name}-v{version}-{i}", self._wake)
            if isinstance(rt, RequestRuntime)
            else ThreadWorker(rt, f"{config.name}-v{version}-{i}")
            for i, rt in enumerate(runtimes)
        ]
        self._idle: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0
        self.stats = ModelStats(histograms=histograms)
        self.in_flight = 0  # batches executing on worker threads
        self.external_in_flight = 0  # requests run outside the queue (an ensemble's)
        self.closed = False
        self._pump_scheduled = False
        self._pass_busy = False  # a request ran inline in this loop pass (submit_nowait)
        self._inline_max_ns = int(config.parameters.get("inline_execution_max_us", 200)) * 1000
        if self.request_mode:
            self._inline_max_ns = 0  # its work is in another process: never on the loop
        # Request runtimes take a second batch while one executes, so the worker process
        # starts it the moment the first is done instead of waiting for the core's next
        # message (the gap cost ~5-20% of a GIL-bound model's throughput on 2 cores).
        # Only without batching: there, a batch grows while its instance is busy.
        self._slots = 2 if self.request_mode and config.max_batch_size == 0 else 1
        self._exec_avg_ns = -1  # moving average of batch compute time; -1 = not measured
        self._inline_runs = 0
        self._worker_done: dict[int, int] = {}  # request runtimes: when each last answered
        db = config.dynamic_batching
        # preserve_ordering: requests in arrival order, answered strictly in that order
        self._ordered: deque[QueuedRequest] | None = (
            deque() if db is not None and db.preserve_ordering else None
        )

    @property
    def instance_count(self) -> int:
        return len(self._workers)

    @property
    def runtimes(self) -> list[Runtime]:
        return [w.runtime for w in self._workers]

    @property
    def ready(self) -> bool:
        """Every instance can take a batch (false while a Python worker restarts)."""
        return all(getattr(w.runtime, "ready", True) for w in self._workers)

    def _down_reason(self) -> str | None:
        """Why no instance can serve, or None when one can or soon will (a worker being
        restarted: requests wait for it, within their timeouts)."""
        if not self.request_mode:
            return None
        runtimes = [w.runtime for w in self._workers]
        if not runtimes or any(rt.ready or not rt.failed for rt in runtimes):
            return None
        return str(runtimes[0].down_reason)

    def _wake(self) -> None:
        """An instance became ready again: serve what waits."""
        if self._loop is not None and not self._pump_scheduled and not self.closed:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for worker in self._workers:
            worker.start(loop)
        self._idle = list(self._workers)

    async def submit(
        self,
        inputs: dict[str, np.ndarray],
        outputs: list[str],
        rows: int,
        key: Hashable,
        priority: int = 0,
        timeout_us: int | None = None,
        context: RequestContext | None = None,
    ) -> Outputs:
        if self.closed or self._loop is None:
            raise UnavailableError(f"model '{self.label}' is not accepting requests")
        if not self.request_mode:
            start = partial(
                self.submit_nowait,
                inputs,
                outputs,
                rows,
                key,
                priority=priority,
                timeout_us=timeout_us,
                context=context,
            )
            return await awaiting(start, dict)
        if (down := self._down_reason()) is not None:
            raise UnavailableError(f"model '{self.label}' is not ready: {down}")
        item = QueuedRequest(inputs, outputs, rows, key, self.queue.level_for(priority))
        item.context = context
        if (
            not self._pump_scheduled
            and not self.queue
            and not self._ordered
            and (worker := self._ready_idle()) is not None
            and worker.busy == 0
        ):
            # Idle instance, nothing queued: this task awaits the worker process itself,
            # without the hops through the queue, the pump and a task of its own.
            try:
                return await self._run_requests_now(worker, item)
            except NotStartedError:
                pass  # that instance died before starting it: wait for any instance
        return await self._queued(item, timeout_us)

    def submit_nowait(
        self,
        inputs: dict[str, np.ndarray],
        outputs: list[str],
        rows: int,
        key: Hashable,
        then: Callable[[Outputs | BaseException], None],
        priority: int = 0,
        timeout_us: int | None = None,
        context: RequestContext | None = None,
    ) -> Outputs | Reply:
        """`submit` without a coroutine, for runtimes on threads (not request runtimes):
        the outputs when the request ran at once; else it is queued, and `then` gets its
        outputs or error when it is answered (called on the loop, by the pump: no task, no
        future, no loop pass in between), and the Reply returned withdraws it (`cancel`).

        A cheap model that is idle answers at once (the lone-request fast path), but only
        the first request of a loop pass: the others that arrived in the same pass (many
        clients at once) wait for the pump at the end of it and run as one batch, one
        runtime call for all of them instead of one each."""
        if self.closed or self._loop is None:
            raise UnavailableError(f"model '{self.label}' is not accepting requests")
        item = QueuedRequest(inputs, outputs, rows, key, self.queue.level_for(priority))
        item.context = context  # a pipeline step's timings
        if (
            not self._pass_busy
            and not self._pump_scheduled
            and not self.in_flight
            and not self.queue
            and not self._ordered
            and 0 <= self._exec_avg_ns < self._inline_max_ns
        ):
            self._pass_busy = True
            self._loop.call_soon(self._end_pass)
            return self._run_now(item)
        self.queue.push(item, self._clock(), timeout_us)
        item.future = reply = Reply(then, item, self.queue)
        if self._ordered is not None:
            self._ordered.append(item)
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)
        return reply

    def _end_pass(self) -> None:
        self._pass_busy = False

    async def _queued(self, item: QueuedRequest, timeout_us: int | None) -> Outputs:
        assert self._loop is not None
        self.queue.push(item, self._clock(), timeout_us)
        item.future = future = self._loop.create_future()
        if self._ordered is not None:
            self._ordered.append(item)
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)
        try:
            result: Outputs = await future
        except asyncio.CancelledError:
            self.queue.discard(item)
            raise
        return result

    def _pump(self) -> None:
        self._pump_scheduled = False
        now = self._clock()
        for item in self.queue.expire(now):
            waited_us = (now - item.enqueue_ns) // 1000
            self._resolve(
                item,
                RequestTimeoutError(
                    f"request to model '{self.label}' timed out after {waited_us} µs in the queue"
                ),
            )
        while self._idle:
            worker = self._idle[-1]
            if self.request_mode:
                worker = self._ready_idle()
                if worker is None:
                    self._fail_if_down()
                    break
            inline = 0 <= self._exec_avg_ns < self._inline_max_ns
            batch = self.queue.take(now, self.in_flight, patient=not inline)
            if batch is None:
                break
            batch = [item for item in batch if not item.future.done()]
            if not batch:
                continue
            if inline:
                self._run_inline(worker, batch)
            else:
                self._take_slot(worker)
                self._dispatch(worker, batch)
        self._arm(self.queue.next_wakeup_ns())

    def _take_slot(self, worker: Any) -> None:
        if not self.request_mode:
            self._idle.remove(worker)
            return
        worker.busy += 1
        if worker.busy >= self._slots:
            self._idle.remove(worker)

    def _release_slot(self, worker: Any) -> None:
        if self.request_mode:
            worker.busy -= 1
            if worker in self._idle:
                return
        self._idle.append(worker)

    def _fail_if_down(self) -> None:
        """No instance is ready and none is executing: what waits fails with the reason."""
        down = self._down_reason()
        if down is None or self.in_flight:
            return
        error = UnavailableError(f"model '{self.label}' is not ready: {down}")
        for item in list(self.queue._waiting()):
            self.queue.discard(item)
            self._resolve(item, error)

    def _arm(self, at_ns: int) -> None:
        if at_ns == 0 or (self._timer is not None and self._timer_at <= at_ns):
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        delay = max(0.0, (at_ns - self._clock()) / 1e9)
        self._timer_at = at_ns
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = 0
        self._pump()

    def _ready_idle(self) -> Any:
        """The ready instance with the fewest batches in flight (request mode)."""
        ready = [w for w in self._idle if w.runtime.ready]
        return min(ready, key=lambda w: w.busy) if ready else None

    async def _run_requests_now(self, worker: Any, item: QueuedRequest) -> Outputs:
        self._take_slot(worker)
        self.in_flight += 1
        item.enqueue_ns = item.dispatch_ns = self._clock()
        run = asyncio.ensure_future(self._execute_requests(worker.runtime, [item]))

        def finished(_: asyncio.Future[BatchResult]) -> None:
            # only now is the instance free: a caller that went away does not end the
            # batch its worker process is executing
            self.in_flight -= 1
            self._release_slot(worker)
            if self.queue and not self._pump_scheduled:
                self._pump_scheduled = True
                self._loop.call_soon(self._pump)  # type: ignore[union-attr]

        run.add_done_callback(finished)
        try:
            result = await asyncio.shield(run)
        except (asyncio.CancelledError, NotStartedError):
            raise
        except Exception as exc:
            raise self._translate(exc) from None
        self._record([item], result)
        outcome = result.results[0]
        if isinstance(outcome, BaseException):
            raise self._translate(outcome)
        return {n: outcome[n] for n in item.outputs if n in outcome}

    def _inline_clock(self) -> Callable[[], int] | None:
        """The CPU clock for the next inline run: the thread's, one run in _INLINE_SAMPLE
        (None: that run goes unmeasured)."""
        self._inline_runs += 1
        return time.thread_time_ns if self._inline_runs % _INLINE_SAMPLE == 1 else None

    def _run_now(self, item: QueuedRequest) -> Outputs:
        item.enqueue_ns = item.dispatch_ns = self._clock()
        result = self._execute(self._idle[-1].runtime, [item], self._inline_clock())
        self._measure(result)
        self._record([item], result)
        outcome = result.results[0]
        if isinstance(outcome, BaseException):
            raise self._translate(outcome)
        return outcome

    def _run_inline(self, worker: Any, batch: list[QueuedRequest]) -> None:
        try:
            result, error = self._execute(worker.runtime, batch, self._inline_clock()), None
        except Exception as exc:
            result, error = None, exc
        self._complete(batch, result, error)

    def _dispatch(self, worker: Any, batch: list[QueuedRequest]) -> None:
        self.in_flight += 1

        def done(result: BatchResult | None, error: BaseException | None) -> None:
            self.in_flight -= 1
            self._release_slot(worker)
            if isinstance(error, NotStartedError):
                self._requeue(batch, error)
            else:
                self._complete(batch, result, error)
            self._pump()

        if self.request_mode:
            worker.submit(lambda rt: self._execute_requests(rt, batch), done)
        else:
            worker.submit(lambda rt: self._execute(rt, batch), done)

    def _requeue(self, batch: list[QueuedRequest], error: NotStartedError) -> None:
        """A batch its instance never started: its requests wait again, for any instance."""
        for item in batch:
            if item.future is None or item.future.done():
                continue
            try:
                self.queue.push(item, self._clock(), None)
            except ConveyorError as exc:  # the queue filled up meanwhile
                self._resolve(item, exc)

    async def _execute_requests(
        self, runtime: RequestRuntime, batch: list[QueuedRequest]
    ) -> BatchResult:
        """On the loop: the runtime answers each request of the batch separately.

        With two batches in flight on one worker (`_slots`), the second waits in the
        worker process until the first is done: its compute starts then, and the wait
        counts as queueing (the worker answers in order)."""
        t0 = time.perf_counter_ns()
        items = [BatchItem(i.inputs, i.outputs, i.rows, i.context) for i in batch]
        results = await runtime.execute(items)
        done = time.perf_counter_ns()
        began = max(t0, self._worker_done.get(id(runtime), 0))
        self._worker_done[id(runtime)] = done
        for item in batch:
            item.dispatch_ns += began - t0
        return BatchResult(results, 0, done - began, 0, 0)

    def _execute(
        self,
        runtime: Runtime,
        batch: list[QueuedRequest],
        cpu_clock: Callable[[], int] | None = time.thread_time_ns,
    ) -> BatchResult:
        """Runs on the worker thread (or inline, on the loop). A failed batch is retried
        request by request, so a bad request fails alone and its batch-mates still get
        their answers. `cpu_clock` measures the batch's CPU cost (see `_measure`); None
        leaves it unmeasured."""
        t0, cpu_start = time.perf_counter_ns(), cpu_clock() if cpu_clock is not None else 0
        names = sorted({name for item in batch for name in item.outputs})
        results: list[Outputs | BaseException]
        t1 = t2 = t0
        try:
            inputs = _concat(batch)
            t1 = time.perf_counter_ns()
            merged = runtime.infer(inputs, names)
            t2 = time.perf_counter_ns()
            results = list(_split(merged, batch, self.batched))
        except Exception as exc:
            if len(batch) == 1:
                results = [exc]
            else:
                results = []
                for item in batch:
                    try:
                        results.append(runtime.infer(item.inputs, item.outputs))
                    except Exception as single_exc:
                        results.append(single_exc)
        t3 = time.perf_counter_ns()
        t2 = max(t2, t1)
        cpu_ns = cpu_clock() - cpu_start if cpu_clock is not None else -1
        return BatchResult(results, t1 - t0, t2 - t1, t3 - t2, cpu_ns)

    def _complete(
        self, batch: list[QueuedRequest], result: BatchResult | None, error: BaseException | None
    ) -> None:
        if result is not None:
            self._measure(result)
            self._record(batch, result)
        for i, item in enumerate(batch):
            outcome: Outputs | BaseException = (
                error if error is not None else result.results[i]  # type: ignore[union-attr]
            )
            if isinstance(outcome, BaseException):
                self._resolve(item, self._translate(outcome))
            elif len(outcome) == len(item.outputs):  # what it asked for (see _split)
                self._resolve(item, outcome)
            else:  # a runtime's every output, or a request runtime's
                self._resolve(item, {n: outcome[n] for n in item.outputs if n in outcome})

    def _record(self, batch: list[QueuedRequest], result: BatchResult) -> None:
        self.stats.record_batch(
            rows=sum([item.rows for item in batch]),
            queue_ns=[item.dispatch_ns - item.enqueue_ns for item in batch],
            input_ns=result.input_ns,
            infer_ns=result.infer_ns,
            output_ns=result.output_ns,
        )
        for item in batch:  # pipeline steps asking for their times (step_timings)
            if item.context is not None and item.context.timing is not None:
                item.context.timing.update(
                    queue_us=round((item.dispatch_ns - item.enqueue_ns) / 1000, 1),
                    compute_us=round(
                        (result.input_ns + result.infer_ns + result.output_ns) / 1000, 1
                    ),
                    batch_rows=sum(i.rows for i in batch),
                )

    def _measure(self, result: BatchResult) -> None:
        # CPU time, not wall time: on a worker thread, wall time includes waiting for
        # the GIL while the loop is busy, which says nothing about the model's cost.
        avg, cost = self._exec_avg_ns, result.cpu_ns
        if cost < 0:  # an inline run left unmeasured
            return
        self._exec_avg_ns = cost if avg < 0 else (avg * 7 + cost) // 8

    def _resolve(self, item: QueuedRequest, outcome: Outputs | BaseException) -> None:
        """Answer a request; with preserve_ordering, only once every earlier one is answered."""
        if self._ordered is None:
            settle(item.future, outcome)
            return
        item.outcome = outcome
        while self._ordered and (
            self._ordered[0].outcome is not None or self._ordered[0].future.done()
        ):
            head = self._ordered.popleft()
            if head.outcome is not None:
                settle(head.future, head.outcome)

    def _translate(self, exc: BaseException) -> ConveyorError:
        if isinstance(exc, ConveyorError):
            return exc
        # The runtime's own message goes to the log only; the client gets a generic one.
        log.error("model %s failed to execute: %s", self.label, exc, exc_info=exc)
        return InternalError(f"model '{self.label}' failed to execute the request")

    def close(self) -> None:
        """Stop accepting; fail what is still queued; stop the workers."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        for item in list(self.queue._waiting()):
            self.queue.discard(item)
            if item.future is not None and not item.future.done():
                item.future.set_exception(UnavailableError(f"model '{self.label}' was unloaded"))
        for worker in self._workers:
            worker.stop()

    async def drain(self, timeout_s: float) -> None:
        """Wait until nothing is queued or executing (bounded)."""
        deadline = time.monotonic() + timeout_s
        while self._busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _busy(self) -> bool:
        """Queued or executing requests, requests a pipeline is running through this
        version, and a decoupled model's requests that are still answering."""
        return bool(
            len(self.queue)
            or self.in_flight
            or self.external_in_flight
            or any(getattr(w.runtime, "pending", 0) for w in self._workers)
        )
