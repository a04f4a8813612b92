"""The private link between the gRPC front process and the server process.

Both sides speak HTTP/1.1 over a Unix socket in a private directory: the front sends
`POST /<package.Service>/<Method>` with the request message exactly as it came off the
wire (the front never parses it), and the server answers 200 with the serialized reply,
or with a `grpc-status` header and the message as the body. Every call is handled by the
same `InferenceService` code as in-process gRPC, so the two layouts cannot drift.

This module holds what both sides share (the method table, the wire rules) and the
server's side (`BridgeApp`); the front's side is `conveyor.grpc.front`.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from conveyor.errors import ConveyorError
from conveyor.grpc import inference_pb2 as pb
from conveyor.grpc import inference_pb2_grpc as pb_grpc
from conveyor.grpc.service import InferenceService, status_of
from conveyor.http.server import HttpRequest, HttpResponse
from conveyor.protocol import v2_grpc
from conveyor.replies import Withdrawable
from conveyor.types import InferResponse

log = logging.getLogger("conveyor.grpc")

SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
STATUS_HEADER = "grpc-status"  # present only on failures: the gRPC status code's number
CONTENT_TYPE = "application/grpc+proto"
STREAM_FRAME = struct.Struct("<I")  # each reply of a streamed answer: its length, then it


class _Capture:
    """Stands in for a grpc server to collect the generated code's method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = handler


def method_handlers(servicer: Any) -> dict[str, grpc.RpcMethodHandler]:
    """`/inference.GRPCInferenceService/<Method>` -> the generated handler around `servicer`."""
    capture = _Capture()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, capture)  # type: ignore[no-untyped-call]
    return capture.handlers


def service_methods() -> dict[str, bool]:
    """Every method's path -> whether it streams (ModelStreamInfer does)."""
    handlers = method_handlers(pb_grpc.GRPCInferenceServiceServicer())
    return {path: h.request_streaming or h.response_streaming for path, h in handlers.items()}


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _Context:
    """The part of `grpc.aio.ServicerContext` that `InferenceService` uses."""

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> None:
        raise _Abort(code, details)


def failure(code: grpc.StatusCode, details: str) -> HttpResponse:
    return HttpResponse(
        400, [details.encode()], "text/plain; charset=utf-8", {STATUS_HEADER: str(code.value[0])}
    )


def _infer_response(response: InferResponse) -> HttpResponse:
    body = v2_grpc.encode_response(response).SerializeToString()
    return HttpResponse(200, [body], CONTENT_TYPE)


def _failure_of(exc: BaseException) -> HttpResponse:
    if isinstance(exc, ConveyorError):
        return failure(status_of(exc), exc.message)
    log.error("internal error in ModelInfer", exc_info=exc)
    return failure(grpc.StatusCode.INTERNAL, "internal server error")


@dataclass(slots=True)
class _Unary:
    call: Callable[[Any, Any], Any]
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes]
    streaming: bool


class BridgeApp:
    """The server's side: runs each forwarded call on the data plane's loop."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service
        self.serving = False  # what grpc.health.v1 answers; kept in step with readiness
        self.methods: dict[str, _Unary] = {}
        for path, h in method_handlers(service).items():
            if h.unary_unary is not None:
                self.methods[path] = _Unary(
                    h.unary_unary, h.request_deserializer, h.response_serializer, False
                )
            elif h.stream_stream is not None:
                self.methods[path] = _Unary(
                    h.stream_stream, h.request_deserializer, h.response_serializer, True
                )

    def answer(
        self, request: HttpRequest, reply: Callable[[HttpResponse], None]
    ) -> HttpResponse | Withdrawable | Awaitable[HttpResponse]:
        """The bridge's HTTP entry. ModelInfer starts here without a coroutine, as REST's
        inference does (http/rest.py): answered at once by a model that answers at once,
        else through `reply`; every other method is a coroutine (`__call__`)."""
        if request.path != MODEL_INFER:
            return self(request)
        try:
            message = pb.ModelInferRequest.FromString(request.body)
        except Exception as exc:  # a malformed message from a client, passed on untouched
            return failure(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request message: {exc}")
        dataplane = self.service.dataplane

        def answered(outcome: InferResponse | BaseException) -> None:
            if isinstance(outcome, InferResponse):
                try:
                    reply(_infer_response(outcome))
                    return
                except Exception as exc:
                    outcome = exc
            reply(_failure_of(outcome))

        try:
            dataplane.check_started()
            answer = dataplane.infer_nowait(v2_grpc.decode_request(message), answered)
        except Exception as exc:
            return _failure_of(exc)
        return _infer_response(answer) if isinstance(answer, InferResponse) else answer

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == HEALTH_CHECK:
            return self._health(request.body)
        method = self.methods.get(request.path)
        if method is None:
            return failure(grpc.StatusCode.UNIMPLEMENTED, f"no method {request.path}")
        try:
            message = method.decode(request.body)
        except Exception as exc:  # a malformed message from a client, passed on untouched
            return failure(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request message: {exc}")
        if method.streaming:
            # one stream message in, its answers (a decoupled model's several, or one
            # in-stream error) out as they come: chunked, each `<u32 length><message>`
            return HttpResponse(200, [], CONTENT_TYPE, stream=self._stream(message))
        try:
            reply = await method.call(message, _Context())
        except _Abort as abort:
            return failure(abort.code, abort.details)
        except Exception:
            log.exception("internal error in %s", request.path)
            return failure(grpc.StatusCode.INTERNAL, "internal server error")
        return HttpResponse(200, [method.encode(reply)], CONTENT_TYPE)

    def _health(self, body: bytes) -> HttpResponse:
        service = health_pb2.HealthCheckRequest.FromString(body).service
        if service not in ("", SERVICE):
            return failure(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        reply = health_pb2.HealthCheckResponse(status=status)
        return HttpResponse(200, [reply.SerializeToString()], CONTENT_TYPE)

    async def _stream(self, message: Any) -> AsyncIterator[bytes]:
        async for reply in self.service.stream_answers(message):
            data = reply.SerializeToString()
            yield STREAM_FRAME.pack(len(data)) + data
