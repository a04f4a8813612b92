"""The runtime extension point: one loaded instance of one model version.

A `Backend` loads `Runtime` instances; the scheduler calls `Runtime.infer` from the
instance's own worker thread, one batch at a time, so a runtime needs no locking.
Runtimes that release the GIL (ONNX Runtime) scale with the number of instances.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conveyor.repository.config import ModelConfig


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """What the model file declares: full shape including any batch dim, -1 = variable."""

    name: str
    datatype: str
    shape: tuple[int, ...]


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


class Backend(ABC):
    """Creates runtime instances for one kind of model file."""

    name: str

    @abstractmethod
    def model_file(self, config: ModelConfig, version_dir: Path) -> Path:
        """The file a version directory must hold (raises FileNotFoundError)."""

    @abstractmethod
    def load(self, config: ModelConfig, version_dir: Path, instance_index: int) -> Runtime:
        """Load one instance; raises on a broken model file."""
