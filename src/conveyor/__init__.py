"""Conveyor: a model-serving system and the laboratory that measures it against its peers.

The public surface: the in-process API (`Conveyor`), the wire-neutral request and
response types, and the error hierarchy every transport renders.
"""

__version__ = "0.1.0"

from conveyor.errors import (
    ConveyorError,
    InternalError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    QueueFullError,
    RequestTimeoutError,
    UnavailableError,
)
from conveyor.local import Conveyor
from conveyor.types import InferRequest, InferResponse, RequestedOutput

__all__ = [
    "Conveyor",
    "ConveyorError",
    "InferRequest",
    "InferResponse",
    "InternalError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QueueFullError",
    "RequestTimeoutError",
    "RequestedOutput",
    "UnavailableError",
    "__version__",
]
