"""The in-process API: the same data plane, called from Python without HTTP.

One async core (`infer_async`, run on the engine's own event loop thread) and a thin
sync wrapper (`infer`). Both are safe to call from any thread and from any event
loop: calls are handed to the engine's loop with `run_coroutine_threadsafe`.

    with Conveyor("models/") as cv:
        out = cv.infer("mlp", {"INPUT": x})
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from conveyor.dataplane import DataPlane
from conveyor.repository.autocomplete import DEFAULT_MAX_BATCH_SIZE
from conveyor.repository.manager import ModelRepository
from conveyor.runtimes.base import Backend
from conveyor.types import InferRequest, InferResponse, RequestedOutput


class Conveyor:
    def __init__(
        self,
        repository: str | Path,
        models: list[str] | None = None,
        backends: dict[str, Backend] | None = None,
        default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ) -> None:
        from conveyor.server import default_backends

        self._repository = ModelRepository(
            Path(repository), backends or default_backends(), default_max_batch_size
        )
        self._models = models
        self.dataplane = DataPlane(self._repository)
        for backend in self._repository.backends.values():
            backend.bind(self.dataplane)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Load the models and start the engine's loop thread (blocking until ready)."""
        self._repository.load(self._models)
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._repository.start(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="conveyor-engine", daemon=True)
        self._thread.start()
        started.wait()
        self._loop = loop
        self.dataplane.ready = True
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        self.dataplane.ready = False

        async def shutdown() -> None:
            await self._repository.drain(5.0)
            self._repository.close()  # on the loop: Python models' workers are stopped there

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join()
        loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    def models(self) -> list[dict[str, Any]]:
        return self.dataplane.repository_index()

    def metadata(self, model: str, version: str = "") -> dict[str, Any]:
        return self.dataplane.model_metadata(model, version)

    def _submit(self, request: InferRequest) -> Any:
        if self._loop is None:
            raise RuntimeError("Conveyor is not started (use start() or a with-block)")
        return asyncio.run_coroutine_threadsafe(self.dataplane.infer(request), self._loop)

    @staticmethod
    def _request(
        model: str,
        inputs: dict[str, np.ndarray],
        version: str,
        outputs: list[str] | None,
        parameters: dict[str, Any] | None,
    ) -> InferRequest:
        return InferRequest(
            model=model,
            inputs={k: np.asarray(v) for k, v in inputs.items()},
            version=version,
            outputs=None if outputs is None else [RequestedOutput(n) for n in outputs],
            parameters=dict(parameters or {}),
        )

    async def infer_async(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        version: str = "",
        outputs: list[str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Infer from any event loop; `parameters` as in V2 (priority, timeout µs)."""
        request = self._request(model, inputs, version, outputs, parameters)
        response: InferResponse = await asyncio.wrap_future(self._submit(request))
        return response.outputs

    def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        version: str = "",
        outputs: list[str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Blocking infer, safe from any thread."""
        request = self._request(model, inputs, version, outputs, parameters)
        response: InferResponse = self._submit(request).result()
        return response.outputs
