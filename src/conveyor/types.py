"""Wire-neutral request and response types: named numpy arrays, decoded once at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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


@dataclass(slots=True)
class InferResponse:
    model: str
    version: str
    outputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


# A piece of a response body: written to the socket as it is (no copies).
Chunk = bytes | bytearray | memoryview
