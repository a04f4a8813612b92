"""Instance workers: one OS thread per model instance.

Runtimes that release the GIL (ONNX Runtime) run concurrently this way. The event
loop hands a whole batch to a worker (never one request: a thread hand-off costs
tens of µs) and gets the result back through `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

from conveyor.runtimes.base import Runtime

Job = Callable[[Runtime], Any]
Done = Callable[[Any, BaseException | None], None]


class ThreadWorker:
    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Job, Done] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def submit(self, job: Job, done: Done) -> None:
        """Run `job(runtime)` on the worker thread; `done(result, error)` runs on the loop."""
        self._jobs.put((job, done))

    def _run(self) -> None:
        assert self._loop is not None
        while (entry := self._jobs.get()) is not None:
            job, done = entry
            try:
                result, error = job(self.runtime), None
            except BaseException as exc:  # reported to the loop, never lost
                result, error = None, exc
            try:
                self._loop.call_soon_threadsafe(done, result, error)
            except RuntimeError:  # loop closed during shutdown
                return

    def stop(self, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        self.runtime.close()
