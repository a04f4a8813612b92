"""Run a load pattern against a target and keep three times per request: when it was
meant to leave, when it left, when its answer was complete.

Closed loop: N workers, each sending as soon as its previous answer arrived (intended =
actual send). Open loop: a dispatcher releases each request at its intended time,
whatever the earlier ones are doing; with `max_in_flight` reached, a request waits, and
that wait counts in its latency (measured from the intended time), as it would for a
real user. Requests finishing after the measurement window are not counted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

from conveyor.bench.patterns import ClosedLoop, Pattern
from conveyor.bench.results import Recorder, to_json
from conveyor.bench.targets import Target, TargetError


async def _one(target: Target, rec: Recorder, intended: float, end: float) -> None:
    sent = time.perf_counter()
    try:
        await target.call()
    except TargetError as exc:
        if sent < end:
            rec.error(exc.kind, exc.detail)
        return
    except Exception as exc:  # a target bug is an error of the run, not a crash
        rec.error(type(exc).__name__, str(exc))
        return
    done = time.perf_counter()
    if done <= end:
        rec.ok(intended, sent, done)


async def run(
    target: Target,
    pattern: Pattern,
    duration_s: float,
    warmup_s: float = 0.0,
    max_in_flight: int = 1000,
) -> dict[str, Any]:
    await target.open()
    try:
        if warmup_s:
            await _drive(target, pattern, warmup_s, Recorder(), max_in_flight)
        rec = Recorder()
        elapsed = await _drive(target, pattern, duration_s, rec, max_in_flight)
    finally:
        await target.close()
    spec = {"kind": type(pattern).__name__, **asdict(pattern)}
    return to_json(rec, target.name, spec, elapsed)


async def _drive(
    target: Target, pattern: Pattern, duration_s: float, rec: Recorder, max_in_flight: int
) -> float:
    start = time.perf_counter()
    end = start + duration_s
    if isinstance(pattern, ClosedLoop):

        async def worker() -> None:
            while (now := time.perf_counter()) < end:
                await _one(target, rec, now, end)

        await asyncio.gather(*(worker() for _ in range(pattern.concurrency)))
        return duration_s
    slots = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()

    async def bounded(intended: float) -> None:
        async with slots:
            await _one(target, rec, intended, end)

    for offset in pattern.offsets(duration_s):
        intended = start + offset
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(bounded(intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    remaining = end - time.perf_counter()
    if remaining > 0:
        await asyncio.sleep(remaining)
    for task in tasks:  # answers after the window do not count
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return duration_s
