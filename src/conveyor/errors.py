"""One transport-neutral error hierarchy.

Every error a client can see carries its HTTP status; transports render it
(`{"error": "..."}` over REST) and never invent their own.

    ConveyorError (500)
    ├── InvalidRequestError (400)      malformed body, wrong dtype/shape, unknown output
    │   └── ModelLoadError             a load through the repository API failed
    ├── NotFoundError (404)            unknown model, version or route
    │   └── ModelNotFoundError
    ├── MethodNotAllowedError (405)
    ├── PayloadTooLargeError (413)     body over --max-request-bytes
    ├── UnavailableError (503)         not ready, shutting down
    │   ├── QueueFullError             bounded queue full (carries Retry-After)
    │   └── RequestTimeoutError        per-request timeout expired while queued
    └── InternalError (500)            anything unexpected: generic message to the client
        └── ModelExecutionError        a model's own code failed: its message is shown

`GRPC_CODES` is the one table from HTTP status to gRPC status code name.

"""

from __future__ import annotations

import asyncio
from http import HTTPStatus


class ConveyorError(Exception):
    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequestError(ConveyorError):
    status = HTTPStatus.BAD_REQUEST


class NotFoundError(ConveyorError):
    status = HTTPStatus.NOT_FOUND


class ModelNotFoundError(NotFoundError):
    pass


class MethodNotAllowedError(ConveyorError):
    status = HTTPStatus.METHOD_NOT_ALLOWED


class PayloadTooLargeError(ConveyorError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnavailableError(ConveyorError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


class QueueFullError(UnavailableError):
    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)}


class RequestTimeoutError(UnavailableError):
    pass


class InternalError(ConveyorError):
    pass


class ModelExecutionError(InternalError):
    """A model's own code (a Python model's `execute`) failed or answered wrongly; the
    message is the model's, so it is shown. `status` may be set from the model's error."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR) -> None:
        super().__init__(message)
        self.status = status


class ModelLoadError(InvalidRequestError):
    """A model could not be loaded (through the repository API); the message says why."""


# HTTP status -> gRPC status code (grpc.StatusCode member name), for every transport.
GRPC_CODES: dict[int, str] = {
    HTTPStatus.BAD_REQUEST: "INVALID_ARGUMENT",
    HTTPStatus.NOT_FOUND: "NOT_FOUND",
    HTTPStatus.METHOD_NOT_ALLOWED: "UNIMPLEMENTED",
    HTTPStatus.REQUEST_TIMEOUT: "DEADLINE_EXCEEDED",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "RESOURCE_EXHAUSTED",
    HTTPStatus.SERVICE_UNAVAILABLE: "UNAVAILABLE",
    HTTPStatus.INTERNAL_SERVER_ERROR: "INTERNAL",
}


def failure_reason(exc: BaseException) -> str:
    """The `reason` label of a failed request."""
    if isinstance(exc, QueueFullError):
        return "rejected"
    if isinstance(exc, RequestTimeoutError):
        return "timeout"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, ConveyorError) and 400 <= exc.status < 500:
        return "bad_request"
    return "internal"
