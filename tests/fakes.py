"""An in-memory backend for unit tests: y = x * 2, with a controllable delay and failure."""

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
    """Doubles `x`. A batch containing the value `poison` fails (to test isolation)."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("x", "FP32", self.backend.shape)]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("y", "FP32", self.backend.shape)]

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        with self.backend.lock:
            self.backend.batches.append(x.shape[0] if x.ndim else 1)
        self.backend.gate.wait(10)
        if self.backend.delay_s:
            time.sleep(self.backend.delay_s)
        if np.any(x == self.backend.slow):
            time.sleep(0.2)
        if np.any(x == self.backend.poison):
            raise RuntimeError("poisoned input")
        return {"y": x * 2}


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, shape: tuple[int, ...] = (-1, 4), delay_s: float = 0.0) -> None:
        self.shape = shape
        self.delay_s = delay_s
        self.poison = -999.0  # a batch holding this value fails
        self.slow = -555.0  # a batch holding this value takes 0.2 s
        self.batches: list[int] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()  # cleared: instances block until set
        self.gate.set()

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
