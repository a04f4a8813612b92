"""An event loop whose clock the test drives: timers fire in order, but waiting for one
costs no real time, and nothing the machine's load does moves the loop's clock.

The clock advances only when the loop has nothing to do but wait for its next timer
(then by exactly that wait), plus `tick_s` for every pass that had work, so that a loop
busy with answers that are always ready still moves forward. Real I/O on loopback (a
server and a client in the same loop) is polled without waiting: loopback delivers a
write before `send` returns, so what is ready is seen on the same pass.

A test of timing logic (rates, schedules, windows, stalls) asserts exact figures on this
loop instead of bounds that a slow machine may miss.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, tick_s: float = 1e-6) -> None:
        super().__init__(selectors.DefaultSelector())
        self._now = 0.0
        self._tick_s = tick_s
        selector = self._selector  # type: ignore[attr-defined]
        poll = selector.select

        def select(timeout: float | None = None) -> list[Any]:
            events = poll(0)
            if events or timeout == 0:
                self._now += self._tick_s
                return events
            if timeout is None:  # no timer: only outside work (a thread) can wake us
                return poll(None)
            self._now += timeout
            return []

        selector.select = select

    def time(self) -> float:
        return self._now

    # what code that measures time with a fine clock reads on this loop instead of
    # perf_counter (conveyor.bench.runner._clock)
    conveyor_clock = time


def run_virtual(main: Coroutine[Any, Any, T], tick_s: float = 1e-6) -> T:
    loop = VirtualTimeLoop(tick_s)
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def virtual(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an `async def` test on a fresh `VirtualTimeLoop` (a plain test for pytest)."""

    @functools.wraps(test)
    def wrapper() -> None:
        run_virtual(test())

    return wrapper
