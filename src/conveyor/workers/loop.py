"""Instance workers for runtimes whose work happens in another process (Python models):
a batch is a task on the event loop that awaits the worker process's answer, so no
thread is held while the model runs. Same interface as `threads.ThreadWorker`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor.runtimes.base import RequestRuntime

AsyncJob = Callable[[RequestRuntime], Awaitable[Any]]
Done = Callable[[Any, BaseException | None], None]


class LoopWorker:
    def __init__(self, runtime: RequestRuntime, name: str, on_ready: Callable[[], None]) -> None:
        self.runtime = runtime
        self.name = name
        self._on_ready = on_ready
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.busy = 0  # batches in flight, counted by the scheduler

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.runtime.start(loop, self._on_ready)

    def submit(self, job: AsyncJob, done: Done) -> None:
        """Run `job(runtime)` as a task; `done(result, error)` runs on the loop after it."""
        assert self._loop is not None
        task: asyncio.Task[Any] = asyncio.ensure_future(job(self.runtime), loop=self._loop)
        self._tasks.add(task)

        def finished(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                done(None, asyncio.CancelledError())
            elif (exc := t.exception()) is not None:
                done(None, exc)
            else:
                done(t.result(), None)

        task.add_done_callback(finished)

    def stop(self, timeout: float = 5.0) -> None:
        self.runtime.close()
