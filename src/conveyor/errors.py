"""One transport-neutral error hierarchy.

Every error a client can see carries its HTTP status; transports render it
(`{"error": "..."}` over REST) and never invent their own.

    ConveyorError (500)
    ├── InvalidRequestError (400)      malformed body, wrong dtype/shape, unknown output
    ├── NotFoundError (404)            unknown model, version or route
    │   └── ModelNotFoundError
    ├── MethodNotAllowedError (405)
    ├── PayloadTooLargeError (413)     body over --max-request-bytes
    ├── UnavailableError (503)         not ready, shutting down
    │   ├── QueueFullError             bounded queue full (carries Retry-After)
    │   └── RequestTimeoutError        per-request timeout expired while queued
    └── InternalError (500)            anything unexpected: generic message to the client

`ModelLoadError` is not a request error: it describes why a model failed to
load and lives in the repository's state table.
"""

from __future__ import annotations

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


class ModelLoadError(Exception):
    """A model (or one of its versions) could not be loaded; the message says why."""
