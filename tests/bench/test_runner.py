"""The runner against a real local server whose latency is controlled: closed-loop p50
matches the server's delay; an open loop counts a stall's queueing from the intended
send times (no coordinated omission), where a closed loop hides it.

Every test that times something runs on a loop whose clock the test drives
(`tests/virtual_time.py`), so its figures are exact and no machine load moves them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from conveyor.bench.patterns import ClosedLoop, ConstantRate
from conveyor.bench.results import merge_histograms
from conveyor.bench.runner import run
from conveyor.bench.targets import HttpTarget, NullTarget
from conveyor.http.server import HttpRequest, HttpResponse, HttpServer
from tests.virtual_time import virtual


class SleepApp:
    """Answers after `delay_s`; once `stall_at` seconds after start, stalls every
    request for `stall_s` (the whole server stops answering, as in a GC pause)."""

    def __init__(self, delay_s: float, stall_at: float = -1, stall_s: float = 0) -> None:
        self.delay_s, self.stall_at, self.stall_s = delay_s, stall_at, stall_s
        self.start = asyncio.get_running_loop().time()
        self.stall_until = 0.0

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        now = asyncio.get_running_loop().time() - self.start
        if self.stall_at >= 0 and now >= self.stall_at and not self.stall_until:
            self.stall_until = now + self.stall_s
        if now < self.stall_until:
            await asyncio.sleep(self.stall_until - now)
        await asyncio.sleep(self.delay_s)
        return HttpResponse(200, [b"{}"])


@asynccontextmanager
async def serving(app: SleepApp) -> AsyncIterator[str]:
    server = HttpServer(app, "127.0.0.1", 0, 1 << 20)  # type: ignore[arg-type]
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/infer"
    finally:
        await server.shutdown(1.0)


@virtual
async def test_closed_loop_p50_is_the_server_delay() -> None:
    async with serving(SleepApp(0.020)) as url:
        result = await run(HttpTarget(url, b"x"), ClosedLoop(2), duration_s=1.0)
    assert result["errors"] == {}
    # 2 clients x 50 requests of 20 ms, less the last ones that the loop's ticks push
    # past the end of the window
    assert 96 <= result["completed"] <= 100
    assert 20 <= result["latency_ms"]["p50"] <= 20.1


@virtual
async def test_open_loop_counts_the_stall_closed_loop_hides_it() -> None:
    async with serving(SleepApp(0.002, stall_at=0.5, stall_s=1.0)) as url:
        open_loop = await run(HttpTarget(url, b"x"), ConstantRate(100), duration_s=3.0)
    async with serving(SleepApp(0.002, stall_at=0.5, stall_s=1.0)) as url:
        closed = await run(HttpTarget(url, b"x"), ClosedLoop(1), duration_s=3.0)
    # a third of the open-loop requests were due during the 1 s stall: each waited
    # from its intended time to the stall's end
    assert open_loop["completed"] == 300
    assert open_loop["latency_ms"]["p50"] < 2.1  # two thirds were not delayed
    assert 690 <= open_loop["latency_ms"]["p90"] <= 710  # 100 waited 0-1 s
    assert open_loop["latency_ms"]["max"] >= 1000
    # the closed loop sent nothing during the stall: one slow request among many
    assert closed["latency_ms"]["p99.9"] < 2.1
    assert closed["latency_ms"]["max"] >= 1000


@virtual
async def test_errors_are_counted_by_kind() -> None:
    async def teapot(request: HttpRequest) -> HttpResponse:
        await asyncio.sleep(0.001)
        return HttpResponse(418, [b'{"error": "short and stout"}'])

    server = HttpServer(teapot, "127.0.0.1", 0, 1 << 20)
    await server.start()
    try:
        target = HttpTarget(f"http://127.0.0.1:{server.port}/", b"")
        result = await run(target, ClosedLoop(1), duration_s=0.3)
    finally:
        await server.shutdown(1.0)
    assert result["completed"] == 0 and 290 <= result["errors"]["http 418"] <= 300
    assert "short and stout" in result["error_samples"]["http 418"][0]


@virtual
async def test_histograms_merge_across_runs() -> None:
    a = await run(NullTarget(0.001), ClosedLoop(2), duration_s=0.3)
    b = await run(NullTarget(0.001), ClosedLoop(2), duration_s=0.3)
    merged = merge_histograms([a["histograms"]["latency_us"], b["histograms"]["latency_us"]])
    assert merged.get_total_count() == a["completed"] + b["completed"]
    assert a["schema"] == "conveyor.bench/1"


@virtual
async def test_trace_replay_sends_on_time() -> None:
    from conveyor.bench.patterns import TraceReplay

    times = tuple(i * 0.01 for i in range(50))
    result = await run(NullTarget(0.001), TraceReplay(times), duration_s=0.6)
    assert result["completed"] == 50
    assert result["schedule_lag_ms"]["max"] < 0.01  # each left when the trace says


@virtual
async def test_ramp_adds_clients_over_time() -> None:
    from conveyor.bench.patterns import Ramp

    ramp = await run(NullTarget(0.01), Ramp(per_second=10, clients=5), duration_s=1.0)
    full = await run(NullTarget(0.01), ClosedLoop(5), duration_s=1.0)
    # clients join at 0, 0.1, ..., 0.4 s: (10+9+8+7+6)/50 of the full load
    assert 0.79 < ramp["completed"] / full["completed"] < 0.81


async def test_fixed_count_and_callable_target() -> None:
    import numpy as np

    from conveyor.bench.patterns import FixedCount
    from conveyor.bench.targets import CallableTarget

    target = CallableTarget("numpy:sum", {"x": np.ones(3)})
    result = await run(target, FixedCount(40, concurrency=4), duration_s=0)
    assert result["completed"] == 40 and result["errors"] == {}
    assert result["target"] == "python:numpy:sum"


@virtual
async def test_stable_windows() -> None:
    from conveyor.bench.runner import Stability

    # on the driven clock every window of a steady target is the same: the first 3 agree
    result = await run(
        NullTarget(0.002),
        ClosedLoop(2),
        duration_s=0,
        stability=Stability(window_s=0.3, tolerance=0.01, max_windows=10),
    )
    assert result["stable"] is True and len(result["windows"]) == 3
    assert abs(result["duration_s"] - 0.9) < 1e-9  # the last 3 windows
    assert all(2.0 <= w["p99_ms"] < 2.01 for w in result["windows"])


class Slowing(NullTarget):
    """Latency grows every call: never stable."""

    async def call(self) -> None:
        self.delay_s *= 1.01
        await super().call()


@virtual
async def test_unstable_is_reported_not_hidden() -> None:
    from conveyor.bench.runner import Stability

    result = await run(
        Slowing(0.001),
        ClosedLoop(1),
        duration_s=0,
        stability=Stability(window_s=0.2, tolerance=0.05, max_windows=4),
    )
    assert result["stable"] is False and len(result["windows"]) == 4
    assert any("unstable" in w for w in result["warnings"])


def test_compare_gives_a_verdict_only_beyond_the_noise() -> None:
    from conveyor.bench.compare import compare

    def res(rate: float, spread: float) -> dict[str, object]:
        windows = [{"throughput_rps": rate * (1 + d), "p99_ms": 5.0} for d in (-spread, 0, spread)]
        return {"throughput_rps": rate, "latency_ms": {"p99": 5.0}, "windows": windows}

    lines = compare(res(1000, 0.02), res(1300, 0.02))
    assert "B is better" in lines[0] and "+30.0%" in lines[0]
    assert "within noise" in compare(res(1000, 0.2), res(1100, 0.2))[0]
    no_windows = {"throughput_rps": 1.0, "latency_ms": {"p99": 1.0}}
    assert "no verdict" in compare(no_windows, no_windows)[0]


def test_worker_arguments_split_the_load() -> None:
    from conveyor.bench.workers import _split_args

    argv = ["http://x", "--concurrency", "5", "--rate", "300", "--workers", "2", "--seed", "7"]
    assert _split_args(argv, 2, 0) == [
        "http://x",
        "--concurrency",
        "3",
        "--rate",
        "150",
        "--seed",
        "7",
    ]
    assert _split_args(argv, 2, 1) == [
        "http://x",
        "--concurrency",
        "2",
        "--rate",
        "150",
        "--seed",
        "8",
    ]
