"""An in-memory backend for unit tests: y = x * 2, with gates the test opens, and failure."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from conveyor.repository.config import ModelConfig
from conveyor.runtimes.base import Backend, BatchItem, RequestRuntime, Runtime, TensorSpec


class FakeRuntime(Runtime):
    """Doubles `x`. A batch containing the value `poison` fails (to test isolation); one
    containing `held` waits for `hold` to be set (to keep that batch alone executing)."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("x", "FP32", self.backend.shape)]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("y", "FP32", self.backend.shape)]

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        backend = self.backend
        x = inputs["x"]
        with backend.lock:
            backend.batches.append(x.shape[0] if x.ndim else 1)
            backend.running += 1
            backend.peak = max(backend.peak, backend.running)
        try:
            _wait(backend.gate)
            if backend.delay_s:
                time.sleep(backend.delay_s)
            if backend.spin_s:
                spun = time.thread_time() + backend.spin_s
                while time.thread_time() < spun:
                    pass
            if np.any(x == backend.held):
                _wait(backend.hold)
            if np.any(x == backend.poison):
                raise RuntimeError("poisoned input")
            return {"y": x * 2}
        finally:
            with backend.lock:
                backend.running -= 1


def _wait(gate: threading.Event) -> None:
    """Block until the test opens `gate`; a gate never opened fails the batch (the
    deadline only bounds a hang: nothing goes on as if it had been opened)."""
    if not gate.wait(60):
        raise RuntimeError("the test never opened the gate")


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, shape: tuple[int, ...] = (-1, 4), delay_s: float = 0.0) -> None:
        self.shape = shape
        self.delay_s = delay_s
        self.spin_s = 0.0  # CPU each batch burns (a model that costs, not one that waits)
        self.poison = -999.0  # a batch holding this value fails
        self.held = -555.0  # a batch holding this value waits for `hold`
        self.batches: list[int] = []  # rows of each batch, as its execution starts
        self.running = 0  # batches executing now
        self.peak = 0  # the most batches that executed at once
        self.lock = threading.Lock()
        self.gate = threading.Event()  # cleared: instances block until set
        self.gate.set()
        self.hold = threading.Event()  # cleared: a batch holding `held` blocks until set
        self.hold.set()

    def model_file(self, config: ModelConfig, version_dir: Path) -> Path:
        return version_dir

    def load(self, config: ModelConfig, version_dir: Path, instance_index: int) -> Runtime:
        if (version_dir / "broken").exists():
            raise RuntimeError("model file is corrupt")
        return FakeRuntime(self)


def write_model(root: Path, name: str, config: str = "", versions: tuple[int, ...] = (1,)) -> Path:
    for v in versions:
        (root / name / str(v)).mkdir(parents=True, exist_ok=True)
    if config:
        (root / name / "config.yaml").write_text(config)
    return root / name


class FakeRequestRuntime(RequestRuntime):
    """A runtime that sees requests (as Python models do), on the loop: each batch waits
    for `release` (an asyncio.Event) and answers y = x * 2 per request; a request holding
    `poison` fails alone. `up` / `down()` play a worker that dies and comes back."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.release: asyncio.Event | None = None
        self.poison = -999.0
        self.up = True
        self.reason = ""
        self.gave_up = False
        self.on_ready: Callable[[], None] = lambda: None

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("x", "FP32", (-1, 4))]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("y", "FP32", (-1, 4))]

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] * 2}

    def start(self, loop: asyncio.AbstractEventLoop, on_ready: Callable[[], None]) -> None:
        self.release = asyncio.Event()
        self.release.set()
        self.on_ready = on_ready

    @property
    def ready(self) -> bool:
        return self.up

    @property
    def down_reason(self) -> str:
        return self.reason

    @property
    def failed(self) -> bool:
        return not self.up and self.gave_up

    def down(self, reason: str, gave_up: bool = False) -> None:
        self.up, self.reason, self.gave_up = False, reason, gave_up

    def back(self) -> None:
        self.up, self.reason = True, ""
        self.on_ready()

    async def execute(self, batch: list[BatchItem]) -> list[dict[str, np.ndarray] | BaseException]:
        self.batches.append(len(batch))
        assert self.release is not None
        await self.release.wait()
        return [
            RuntimeError("poisoned")
            if np.any(i.inputs["x"] == self.poison)
            else {"y": i.inputs["x"] * 2}
            for i in batch
        ]
