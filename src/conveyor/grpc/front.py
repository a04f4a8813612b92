"""The gRPC front process, started and supervised by `conveyor serve` (`--grpc-front
process`, the default):

    python -m conveyor.grpc.front --upstream SOCKET --host H --port P ...

It listens for gRPC and forwards every call, as the bytes it received, to the server
process over the bridge (bridge.py); it parses no inference message. grpc's Python
bindings hold the GIL for most of their ~0.7 ms per call on this machine: in a process
of its own that cost no longer takes turns with the HTTP server's loop, so neither
protocol starves the other, and the two run on two cores.

Prints `listening PORT` on stdout once serving; exits on SIGTERM/SIGINT after finishing
in-flight calls (bounded by --exit-timeout-secs), and when its parent process is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httptools

from conveyor import logs
from conveyor.grpc import inference_pb2 as pb
from conveyor.grpc.auth import AuthInterceptor
from conveyor.grpc.bridge import (
    CONTENT_TYPE,
    HEALTH_CHECK,
    STATUS_HEADER,
    STREAM_FRAME,
    service_methods,
)
from conveyor.grpc.streams import as_completed
from conveyor.security import Security, SecurityError, Tls

log = logging.getLogger("conveyor.grpc")

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class UpstreamError(Exception):
    """The server process did not answer (it is restarting, or gone)."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to the server process; one call at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.status_header: str | None = None
        self.body: list[bytes] = []
        self.header_name = b""
        # a streamed answer: `<u32 length><message>` pieces, queued as they arrive
        self.stream: asyncio.Queue[bytes | tuple[int, bytes] | None] | None = None
        self.pieces = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(UpstreamError("connection to the server process lost"))
        if self.stream is not None:
            self.stream.put_nowait((14, b"connection to the server process lost"))  # UNAVAILABLE
            self.stream.put_nowait(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(UpstreamError(f"bad answer from the server: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == STATUS_HEADER.encode():
            self.status_header = value.decode()

    def on_body(self, body: bytes) -> None:
        if self.stream is None or self.status_header is not None:
            self.body.append(body)
            return
        pieces = self.pieces
        pieces += body
        pos = 0
        while len(pieces) - pos >= STREAM_FRAME.size:
            (n,) = STREAM_FRAME.unpack_from(pieces, pos)
            if len(pieces) - pos - STREAM_FRAME.size < n:
                break
            start = pos + STREAM_FRAME.size
            self.stream.put_nowait(bytes(pieces[start : start + n]))
            pos = start + n
        if pos:
            del pieces[:pos]

    def on_message_complete(self) -> None:
        code = -1 if self.status_header is None else int(self.status_header)
        body = b"".join(self.body)
        self.body, self.status_header = [], None
        if self.stream is not None:
            if code >= 0:
                self.stream.put_nowait((code, body))
            self.stream.put_nowait(None)
            return
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((code, body))

    async def call_stream(self, path: str, body: bytes) -> AsyncIterator[bytes | tuple[int, bytes]]:
        """A streamed answer: each reply message as it comes, or (gRPC code, message)."""
        if self.transport is None:
            raise UpstreamError("connection to the server process closed")
        queue: asyncio.Queue[bytes | tuple[int, bytes] | None] = asyncio.Queue()
        self.stream = queue
        self.pieces = bytearray()
        self._send(path, body)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self.stream = None

    async def call(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(-1, reply) on success, else (gRPC status code, message)."""
        if self.transport is None:
            raise UpstreamError("connection to the server process closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self._send(path, body)
        try:
            return await self.waiter
        finally:
            self.waiter = None

    def _send(self, path: str, body: bytes) -> None:
        assert self.transport is not None
        head = (
            f"POST {path} HTTP/1.1\r\nhost: conveyor\r\ncontent-type: {CONTENT_TYPE}\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)


class Upstream:
    """A pool of connections to the server process's bridge socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.idle: list[_Connection] = []

    async def call(self, path: str, body: bytes) -> tuple[int, bytes]:
        conn = None
        while self.idle and conn is None:
            conn = self.idle.pop()
            if conn.transport is None:  # closed while idle: never hand it a call
                conn = None
        if conn is None:
            conn = await self._connect()
        try:
            result = await conn.call(path, body)
        except BaseException:
            if conn.transport is not None:  # its answer may still come: never reuse it
                conn.transport.close()
            raise
        self.idle.append(conn)
        return result

    async def call_stream(self, path: str, body: bytes) -> AsyncIterator[bytes | tuple[int, bytes]]:
        conn = None
        while self.idle and conn is None:
            conn = self.idle.pop()
            if conn.transport is None:
                conn = None
        if conn is None:
            conn = await self._connect()
        complete = False
        try:
            async for item in conn.call_stream(path, body):
                yield item
            complete = True
        finally:
            if complete and conn.transport is not None:
                self.idle.append(conn)
            elif conn.transport is not None:  # abandoned mid-answer: never reuse it
                conn.transport.close()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_unix_connection(_Connection, self.path)
        except OSError as exc:
            raise UpstreamError(f"cannot reach the server process: {exc}") from exc
        return conn

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


class Front:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def _forward(self, path: str, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            code, reply = await self.upstream.call(path, body)
        except UpstreamError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise AssertionError("unreachable: abort raises") from exc
        if code >= 0:
            await context.abort(_CODES.get(code, grpc.StatusCode.UNKNOWN), reply.decode())
        return reply

    def unary(self, path: str) -> Any:
        async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self._forward(path, request, context)

        return grpc.unary_unary_rpc_method_handler(handler)

    def stream(self, path: str) -> Any:
        """ModelStreamInfer: messages are forwarded concurrently, each answer sent as ready."""

        async def handler(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            async def answer(message: bytes) -> AsyncIterator[bytes]:
                try:
                    async for item in self.upstream.call_stream(path, message):
                        if isinstance(item, tuple):  # (code, message): an error
                            error = pb.ModelStreamInferResponse(error_message=item[1].decode())
                            yield error.SerializeToString()
                        else:
                            yield item
                except UpstreamError as exc:
                    error = pb.ModelStreamInferResponse(error_message=str(exc))
                    yield error.SerializeToString()

            async for reply in as_completed(requests, answer):
                yield reply

        return grpc.stream_stream_rpc_method_handler(handler)

    def health(self) -> Any:
        from grpc_health.v1 import health_pb2

        async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self._forward(HEALTH_CHECK, request, context)

        async def watch(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            last = None
            while True:
                reply = await self._forward(HEALTH_CHECK, request, context)
                status = health_pb2.HealthCheckResponse.FromString(reply).status
                if status != last:
                    last = status
                    yield reply
                await asyncio.sleep(0.5)

        return grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health",
            {
                "Check": grpc.unary_unary_rpc_method_handler(check),
                "Watch": grpc.unary_stream_rpc_method_handler(watch),
            },
        )

    def handlers(self) -> list[Any]:
        table: dict[str, Any] = {}
        for path, streaming in service_methods().items():
            name = path.rsplit("/", 1)[1]
            table[name] = self.stream(path) if streaming else self.unary(path)
        inference = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", table)
        return [inference, self.health()]


async def serve(args: argparse.Namespace) -> int:
    upstream = Upstream(args.upstream)
    try:
        security = (
            Security.from_sources(args.auth_token_file, args.control_token_file, args.auth_exempt)
            if args.auth == "on"
            else None
        )
        tls = Tls.from_args(args.tls_cert_file, args.tls_key_file, args.tls_client_ca_file)
    except SecurityError as exc:
        print(f"gRPC front: {exc}", file=sys.stderr, flush=True)
        return 1
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", args.max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
        interceptors=[AuthInterceptor(security)] if security is not None else None,
    )
    server.add_generic_rpc_handlers(Front(upstream).handlers())
    try:
        address = f"{args.host}:{args.port}"
        if tls is not None:
            port = server.add_secure_port(address, tls.grpc_credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        return 1
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening {port}", flush=True)

    async def orphaned() -> None:
        while os.getppid() == args.parent_pid:
            await asyncio.sleep(0.5)
        log.error("gRPC front: the server process is gone; exiting")
        shutil.rmtree(os.path.dirname(args.upstream), ignore_errors=True)  # it cannot
        stop.set()

    watcher = loop.create_task(orphaned())
    await stop.wait()
    watcher.cancel()
    await server.stop(args.exit_timeout_secs)
    upstream.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conveyor.grpc.front", description=__doc__)
    p.add_argument("--upstream", required=True, help="the server process's bridge socket")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--max-message-bytes", type=int, default=64 * 1024 * 1024)
    p.add_argument("--exit-timeout-secs", type=float, default=30.0)
    p.add_argument("--parent-pid", type=int, default=os.getppid())
    p.add_argument("--log-level", default="info")
    p.add_argument("--log-format", default="text")
    p.add_argument("--auth", choices=("on", "off"), default="off")
    p.add_argument("--auth-token-file")
    p.add_argument("--control-token-file")
    p.add_argument("--auth-exempt", default="health,metrics")
    p.add_argument("--tls-cert-file")
    p.add_argument("--tls-key-file")
    p.add_argument("--tls-client-ca-file")
    args = p.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        import uvloop

        return uvloop.run(serve(args))
    except ImportError:
        return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
