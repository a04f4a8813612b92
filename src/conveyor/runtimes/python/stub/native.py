"""Conveyor's own Python model form: a plain class, no framework to import.

    class Model:
        def load(self, context):          # once per instance; optional
            self.w = np.load(context.model_dir / "w.npy")
        def infer(self, inputs):          # the batch: named numpy arrays, rows concatenated
            return {"y": inputs["x"] @ self.w}
        def close(self):                  # optional
            ...

`infer` gets the dynamic batch as one dict of arrays (the requests' rows concatenated
along the first dimension when `max_batch_size > 0`) and returns the outputs for all of
them; the worker splits them back. If it raises on a batch of several requests, each is
run again alone, so a bad request fails by itself with its exception's message.
Inside a worker this module is also importable as `conveyor_model` (for type hints).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Context:
    model_name: str
    model_version: int
    model_dir: Path  # the version directory (REPO/<model>/<version>)
    instance_name: str
    instance_index: int
    config: dict[str, Any] = field(default_factory=dict)  # Triton's JSON form
    parameters: dict[str, str] = field(default_factory=dict)


class Model(Protocol):
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class RequestError(Exception):
    """Raise it from `infer` to fail the request with exactly this message."""
