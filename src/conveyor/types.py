"""Wire-neutral request and response types: named numpy arrays, decoded once at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conveyor.sharedmem import ShmRef


@dataclass(slots=True)
class RequestedOutput:
    name: str
    # None: follow the request-level default (`binary_data_output`).
    binary: bool | None = None


@dataclass(slots=True)
class InferRequest:
    model: str
    inputs: dict[str, np.ndarray]
    version: str = ""  # "" = the model's default version
    id: str | None = None
    outputs: list[RequestedOutput] | None = None  # None = all outputs
    parameters: dict[str, Any] = field(default_factory=dict)
    binary_output: bool = False  # request-level `binary_data_output`
    # tensors in system shared memory: input name -> (ref, datatype, shape)
    shm_inputs: dict[str, tuple[ShmRef, str, tuple[int, ...]]] = field(default_factory=dict)
    shm_outputs: dict[str, ShmRef] = field(default_factory=dict)  # output name -> where
    # when given, the scheduler writes the request's queue_us / compute_us / batch_rows
    # into it (a pipeline step's own times, for `step_timings`)
    timing: dict[str, float] | None = None


@dataclass(slots=True)
class InferResponse:
    model: str
    version: str
    outputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    in_shm: dict[str, ShmRef] = field(default_factory=dict)  # outputs written to shared memory


# A piece of a response body: written to the socket as it is (no copies).
Chunk = bytes | bytearray | memoryview
