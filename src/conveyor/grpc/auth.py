"""Bearer tokens on gRPC (conveyor.security): a server interceptor that reads the
`authorization` metadata and answers UNAUTHENTICATED or PERMISSION_DENIED before the
call reaches its handler. Used by the front process and by the in-process servers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from conveyor.security import Security, grpc_group


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, security: Security) -> None:
        self.security = security

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        metadata = handler_call_details.invocation_metadata or ()
        authorization = next((str(v) for k, v in metadata if k == "authorization"), None)
        denied = self.security.check(grpc_group(method), authorization)
        handler = await continuation(handler_call_details)
        if denied is None or handler is None:
            return handler
        code = grpc.StatusCode.PERMISSION_DENIED
        if denied.status == 401:
            code = grpc.StatusCode.UNAUTHENTICATED

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(code, denied.message)

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)
