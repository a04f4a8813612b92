"""The runtime extension point: one loaded instance of one model version.

A `Backend` loads `Runtime` instances; the scheduler calls `Runtime.infer` from the
instance's own worker thread, one batch at a time, so a runtime needs no locking.
Runtimes that release the GIL (ONNX Runtime) scale with the number of instances.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from conveyor.errors import UnavailableError
from conveyor.repository.config import ModelConfig
from conveyor.types import InferRequest, InferResponse

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """What the model file declares: full shape including any batch dim, -1 = variable."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def config_specs(config: ModelConfig) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The tensors a config declares, as a runtime reports them (batch dim included), for
    runtimes whose tensors come from the config rather than a model file."""
    batch = (-1,) if config.max_batch_size > 0 else ()
    return (
        [TensorSpec(t.name, t.datatype, (*batch, *t.dims)) for t in config.inputs],
        [TensorSpec(t.name, t.datatype, (*batch, *t.dims)) for t in config.outputs],
    )


class Runtime(ABC):
    @property
    @abstractmethod
    def inputs(self) -> list[TensorSpec]: ...

    @property
    @abstractmethod
    def outputs(self) -> list[TensorSpec]: ...

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run one batch; returns every requested output, first dim = batch rows."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the instance's resources."""


class LoadedRuntime(Runtime):
    """A runtime whose tensors are fixed when it loads (the file-based runtimes)."""

    _inputs: list[TensorSpec]
    _outputs: list[TensorSpec]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs


# A decoupled model's answer to one request, delivered on the loop: outputs (or None),
# the error that ends the request (or None), whether it is the last, response parameters.
OnResponse = Callable[[Outputs | None, BaseException | None, bool, dict[str, Any]], None]


@dataclass(slots=True)
class RequestContext:
    """What a request carries besides its tensors, for runtimes that see requests."""

    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    on_response: OnResponse | None = None  # decoupled models only
    timing: dict[str, float] | None = None  # filled by the scheduler: see InferRequest.timing


@dataclass(slots=True)
class BatchItem:
    inputs: Outputs
    outputs: list[str]
    rows: int
    context: RequestContext | None


class NotStartedError(UnavailableError):
    """The batch was handed to an instance that died before starting it: the scheduler
    queues its requests again (they lose nothing)."""


class RequestRuntime(Runtime):
    """A runtime that executes a batch as its separate requests, asynchronously on the
    event loop, its work done elsewhere (Python models: a worker process per instance).
    `infer` stays available, blocking, until `start` (for warm-up at load time)."""

    decoupled = False

    @abstractmethod
    def start(self, loop: asyncio.AbstractEventLoop, on_ready: Callable[[], None]) -> None:
        """Serve from `loop`; call `on_ready` whenever the instance becomes ready again."""

    @property
    @abstractmethod
    def ready(self) -> bool: ...

    @property
    @abstractmethod
    def down_reason(self) -> str:
        """Why the instance is not ready (empty when it is)."""

    @property
    def failed(self) -> bool:
        """Down with no recovery under way that is expected to succeed (its last restart
        failed): requests should not wait for it."""
        return False

    @abstractmethod
    async def execute(self, batch: list[BatchItem]) -> list[Outputs | BaseException]:
        """One result per request: its outputs, or the error that fails it alone."""


class Caller(Protocol):
    """The data plane, as a model calling other models (BLS) sees it."""

    async def infer(self, request: InferRequest) -> InferResponse: ...

    def infer_stream(self, request: InferRequest) -> AsyncIterator[InferResponse]: ...


class Backend(ABC):
    """Creates runtime instances for one kind of model file."""

    name: str

    def bind(self, caller: Caller) -> None:  # noqa: B027 - optional hook
        """Called once by the composition root: how models reach other models."""

    def render_metrics(self) -> str:
        """Prometheus text of the backend's own metrics (empty by default)."""
        return ""

    def model_file(self, config: ModelConfig, version_dir: Path) -> Path:
        """The file a version directory must hold (raises FileNotFoundError)."""
        path = version_dir / config.default_model_filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        return path

    @abstractmethod
    def load(self, config: ModelConfig, version_dir: Path, instance_index: int) -> Runtime:
        """Load one instance; raises on a broken model file."""
