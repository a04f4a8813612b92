"""Run a load pattern against a target and keep three times per request: when it was
meant to leave, when it left, when its answer was complete.

Closed loop: N workers, each sending as soon as its previous answer arrived (intended =
actual send). Open loop: a dispatcher releases each request at its intended time,
whatever the earlier ones are doing; with `max_in_flight` reached, a request waits, and
that wait counts in its latency (measured from the intended time), as it would for a
real user. Requests finishing after the measurement window are not counted.

Every time is read from `_clock()`: perf_counter, or the clock of a loop that a test
drives (tests/virtual_time.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from conveyor.bench import early_stopping
from conveyor.bench.live import LiveView
from conveyor.bench.monitor import Monitor
from conveyor.bench.patterns import ClosedLoop, FixedCount, Pattern, Ramp, TraceReplay
from conveyor.bench.results import Recorder, to_json
from conveyor.bench.server_stats import PrometheusProbe, StatsProbe
from conveyor.bench.targets import SizedTarget, Target, TargetError


def _clock() -> Callable[[], float]:
    """perf_counter (uvloop's `loop.time()` counts whole milliseconds), or the clock of
    a loop that drives its own (`conveyor_clock`: the tests' virtual-time loop)."""
    clock: Callable[[], float] = getattr(
        asyncio.get_running_loop(), "conveyor_clock", time.perf_counter
    )
    return clock


async def _one(
    target: Target, rec: Recorder, intended: float, end: float, size: int | None = None
) -> None:
    now = _clock()
    sent = now()
    try:
        if size is None:
            await target.call()
        else:
            assert isinstance(target, SizedTarget)
            await target.call_sized(size)
    except TargetError as exc:
        if sent < end:
            rec.error(exc.kind, exc.detail, now())
        return
    except Exception as exc:  # a target bug is an error of the run, not a crash
        rec.error(type(exc).__name__, str(exc), now())
        return
    done = now()
    if done <= end:
        rec.ok(intended, sent, done, size or 1)


@dataclass(frozen=True)
class Stability:
    """perf_analyzer's rule: measure in windows of `window_s`; the result is stable when
    the last 3 windows agree within ±`tolerance` in throughput and in the latency
    percentile chosen (p99 by default).
    Otherwise measure more windows, up to `max_windows`, then report it as unstable."""

    window_s: float = 5.0
    tolerance: float = 0.10
    max_windows: int = 10
    percentile: float = 99.0  # the latency statistic that must agree too


@dataclass(frozen=True)
class EarlyStop:
    """MLPerf LoadGen's early stopping as a stopping rule: measure in windows of
    `window_s`, all counted together, and stop once the `percentile`'s early-stopping
    estimate (an upper bound at `confidence`, early_stopping.py) exists and lies within
    `tolerance` of the empirical percentile; at the run's duration, stop and say it was
    not met."""

    percentile: float = 0.99
    tolerance: float = 0.05
    confidence: float = 0.99
    window_s: float = 1.0


def window_stats(rec: Recorder, window_s: float, percentile: float = 99.0) -> dict[str, float]:
    def at(p: float) -> float:
        return rec.latency.get_value_at_percentile(p) / 1000 if rec.completed else 0.0

    out = {"throughput_rps": rec.completed / window_s, "p99_ms": at(99)}
    out[f"p{percentile:g}_ms"] = at(percentile)
    return out


def _agree(values: list[float], tolerance: float) -> bool:
    mean = sum(values) / len(values)
    return mean > 0 and all(abs(v - mean) <= tolerance * mean for v in values)


async def run(
    target: Target,
    pattern: Pattern,
    duration_s: float,
    warmup_s: float = 0.0,
    max_in_flight: int = 1000,
    stability: Stability | None = None,
    probe: StatsProbe | None = None,
    monitor: Monitor | None = None,
    scrape: PrometheusProbe | None = None,
    live: LiveView | None = None,
    early: EarlyStop | None = None,
) -> dict[str, Any]:
    """Warm up, then measure for `duration_s` (or, with `stability`, in windows until
    3 agree; or, with `early`, until the tail estimate is met, at most `duration_s`);
    the result covers the measured time only (with `stability`, the last 3 windows)."""
    await target.open()
    windows: list[dict[str, float]] = []
    stable = None
    try:
        if warmup_s and not isinstance(pattern, FixedCount):
            await _watched(live, "warm-up", warmup_s, target, pattern, Recorder(), max_in_flight)
        before = await probe.snapshot() if probe else None
        scraped = await scrape.snapshot() if scrape else None
        if monitor is not None:
            monitor.begin()
        cpu0, t0 = time.process_time(), time.perf_counter()
        early_met: bool | None = None
        if early is not None and not isinstance(pattern, FixedCount):
            rec, elapsed, early_met = Recorder(), 0.0, False
            while elapsed < duration_s and not early_met:
                part = Recorder()
                span = min(early.window_s, duration_s - elapsed)
                phase = f"window {round(elapsed / early.window_s) + 1}"
                elapsed += await _watched(live, phase, span, target, pattern, part, max_in_flight)
                rec.merge(part)
                tail = early_stopping.estimate(rec.latency, early.percentile, early.confidence)
                early_met = early_stopping.met(tail, early.tolerance)
            measured = rec.completed
        elif stability is None or isinstance(pattern, FixedCount):
            rec = Recorder()
            elapsed = await _watched(
                live, "measure", duration_s, target, pattern, rec, max_in_flight
            )
            measured = rec.completed
        else:
            recs: list[Recorder] = []
            stable = False
            while len(recs) < stability.max_windows:
                recs.append(Recorder())
                phase = f"window {len(recs)}"
                window = stability.window_s
                await _watched(live, phase, window, target, pattern, recs[-1], max_in_flight)
                windows.append(window_stats(recs[-1], stability.window_s, stability.percentile))
                if agree(windows, stability):
                    stable = True
                    break
            measured = sum(r.completed for r in recs)
            rec = recs[-3] if len(recs) >= 3 else recs[0]
            for other in recs[-2:] if len(recs) >= 3 else recs[1:]:
                rec.merge(other)
            elapsed = stability.window_s * min(3, len(recs))
        cpu = (time.process_time() - cpu0) / max(time.perf_counter() - t0, 1e-9)
        if monitor is not None:
            monitor.end()
        after = await probe.snapshot() if probe else None
        scraped_after = await scrape.snapshot() if scrape else None
    finally:
        await target.close()
    spec = {"kind": type(pattern).__name__, **asdict(pattern)}
    if isinstance(pattern, TraceReplay):
        spec["times"] = len(pattern.times)
        spec["sizes"] = f"{min(pattern.sizes)}-{max(pattern.sizes)}" if pattern.sizes else None
    result = to_json(rec, target.name, spec, elapsed)
    result["client_cpu"] = round(cpu, 3)
    result["windows"] = windows
    if probe is not None:
        mean = result["latency_ms"].get("mean")
        result["server"] = StatsProbe.breakdown(before, after, mean)
    if scrape is not None:
        result["prometheus"] = scrape.delta(scraped, scraped_after)
    if monitor is not None:
        result["hardware"] = monitor.report(measured)  # over all the measured time
    result["stable"] = stable
    result["early_stopping"] = {
        f"p{p * 100:g}": early_stopping.estimate(
            rec.latency, p, early.confidence if early else 0.99
        )
        for p in (0.9, 0.99, 0.999)
    }
    result["warnings"] = generator_warnings(result)
    if early is not None and not isinstance(pattern, FixedCount):
        key = f"p{early.percentile * 100:g}"
        entry = result["early_stopping"].get(key) or early_stopping.estimate(
            rec.latency, early.percentile, early.confidence
        )
        result["early_stopping"][key] = entry
        result["early_stopping"]["rule"] = {**asdict(early), "met": early_met}
        if not early_met:
            need = entry["min_samples"]
            result["warnings"].append(
                f"early stopping not met for {key} in {elapsed:g} s: {entry['samples']} "
                f"samples (at least {need} needed for an estimate at "
                f"{early.confidence:.0%} confidence); its estimate "
                f"{entry['estimate_ms']} ms vs {entry['empirical_ms']} ms empirical"
            )
    if stable is False:
        result["warnings"].append(
            f"unstable: no 3 consecutive windows agreed within ±{stability.tolerance:.0%} "  # type: ignore[union-attr]
            f"in {len(windows)} windows; the figures are the last 3 windows'"
        )
    return result


async def stream_windows(
    target: Target,
    pattern: Pattern,
    window_s: float,
    windows: int,
    warmup_s: float,
    max_in_flight: int,
    emit: Callable[[int, Recorder, float], None],
) -> None:
    """A worker of `--workers N` with windows: warm up, then measure `windows` windows
    back to back, handing each to `emit(index, recorder, client CPU)`; the coordinating
    process decides on stability across all workers and stops them."""
    await target.open()
    try:
        if warmup_s:
            await _drive(target, pattern, warmup_s, Recorder(), max_in_flight)
        for i in range(windows):
            rec = Recorder()
            cpu0, t0 = time.process_time(), time.perf_counter()
            await _drive(target, pattern, window_s, rec, max_in_flight)
            emit(i, rec, (time.process_time() - cpu0) / max(time.perf_counter() - t0, 1e-9))
    finally:
        await target.close()


def agree(windows: list[dict[str, float]], stability: Stability) -> bool:
    """The last 3 windows agree within the tolerance in throughput and the percentile."""
    last = windows[-3:]
    return len(last) == 3 and all(
        _agree([w[k] for w in last], stability.tolerance)
        for k in ("throughput_rps", f"p{stability.percentile:g}_ms")
    )


def generator_warnings(result: dict[str, Any]) -> list[str]:
    """Signs that the generator, not the target, set the pace."""
    out = []
    if result["client_cpu"] > 0.85:
        out.append(
            f"the generator used {result['client_cpu']:.0%} of a CPU core: it may be "
            "the bottleneck (use several generator processes)"
        )
    lag = result["schedule_lag_ms"].get("p99", 0.0)
    if lag > 1.0:
        out.append(
            f"requests left up to {lag:.1f} ms late (p99 schedule lag): the "
            "generator could not keep the schedule"
        )
    return out


async def _watched(
    live: LiveView | None,
    phase: str,
    duration_s: float,
    target: Target,
    pattern: Pattern,
    rec: Recorder,
    max_in_flight: int,
) -> float:
    """`_drive`, with the live view refreshed while it runs."""
    if live is None:
        return await _drive(target, pattern, duration_s, rec, max_in_flight)
    now = _clock()
    start = now()
    total = 0.0 if isinstance(pattern, FixedCount) else duration_s

    async def tick() -> None:
        while True:
            live.update(phase, rec, now() - start, total)
            await asyncio.sleep(0.5)

    ticker = asyncio.ensure_future(tick())
    try:
        return await _drive(target, pattern, duration_s, rec, max_in_flight)
    finally:
        ticker.cancel()
        live.phase_done()


async def _drive(
    target: Target, pattern: Pattern, duration_s: float, rec: Recorder, max_in_flight: int
) -> float:
    now = _clock()
    start = now()
    end = start + duration_s
    if isinstance(pattern, FixedCount):
        left = [pattern.requests]

        async def counted() -> None:
            while left[0] > 0:
                left[0] -= 1
                await _one(target, rec, now(), float("inf"))

        await asyncio.gather(*(counted() for _ in range(pattern.concurrency)))
        return now() - start
    if isinstance(pattern, ClosedLoop | Ramp):
        clients = pattern.concurrency if isinstance(pattern, ClosedLoop) else pattern.clients
        spawn = 0.0 if isinstance(pattern, ClosedLoop) else 1.0 / pattern.per_second

        async def worker(i: int) -> None:
            if spawn:
                await asyncio.sleep(max(0.0, start + i * spawn - now()))
            while (sent := now()) < end:
                await _one(target, rec, sent, end)

        await asyncio.gather(*(worker(i) for i in range(clients)))
        return duration_s
    slots = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()

    async def bounded(intended: float, size: int | None) -> None:
        async with slots:
            await _one(target, rec, intended, end, size)

    sizes = pattern.sizes if isinstance(pattern, TraceReplay) and pattern.sizes else None
    for i, offset in enumerate(pattern.offsets(duration_s)):
        intended = start + offset
        delay = intended - now()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(bounded(intended, sizes[i] if sizes else None))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    remaining = end - now()
    if remaining > 0:
        await asyncio.sleep(remaining)
    for task in tasks:  # answers after the window do not count
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return duration_s
