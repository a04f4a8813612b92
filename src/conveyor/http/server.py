"""A lean HTTP/1.1 server: asyncio Protocol + httptools' parser (llhttp).

Chosen by measurement (shared/DATA.md): for small models the HTTP layer decides
throughput, and this shape is the fastest measured on this machine (≈28k req/s
vs ≈15k for a bare ASGI app on uvicorn, ≈5k for FastAPI). It does only what the
inference protocols need: keep-alive, pipelining (answered in order), chunked
request bodies, `Expect: 100-continue`, a request-size limit (413), timeouts for
stalled bodies (408) and idle connections, and graceful shutdown.

The application is one coroutine function `app(HttpRequest) -> HttpResponse`; an app
may instead have `answer(HttpRequest, reply)`, which returns the response itself when it
has it at once (no task, no coroutine: the hot path of a cheap model), or a coroutine, or
calls `reply(response)` later and returns what withdraws the request (`cancel()`).

Every time here (idle and read timeouts, the shutdown deadline) is the event loop's clock
(`loop.time()`), so that a test can run the server on a loop whose clock it drives.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools
import orjson

from conveyor.replies import Withdrawable
from conveyor.types import Chunk

log = logging.getLogger("conveyor.http")


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(slots=True)
class HttpResponse:
    status: int = 200
    body: list[Chunk] = field(default_factory=list)
    content_type: str = "application/json"
    headers: dict[str, str] | None = None
    # a body written as it is produced (chunked transfer encoding), instead of `body`
    stream: AsyncIterator[bytes] | None = None


App = Callable[[HttpRequest], Awaitable[HttpResponse]]


_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


def json_response(value: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, [orjson.dumps(value)])


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(status, [orjson.dumps({"error": message})], headers=headers)


_PREFIXES: dict[tuple[int, str], bytes] = {}  # status line and content type, made once
_HEADER_NAMES: dict[bytes, str] = {}  # a header name as sent -> its lower-case str
_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}


def _head(resp: HttpResponse, length: int, keep_alive: bool) -> bytes:
    prefix = _PREFIXES.get((resp.status, resp.content_type))
    if prefix is None:
        status = _STATUS_LINES.get(resp.status) or f"HTTP/1.1 {resp.status} Unknown\r\n".encode()
        prefix = status + b"content-type: " + resp.content_type.encode() + b"\r\ncontent-length: "
        if len(_PREFIXES) < 256:
            _PREFIXES[(resp.status, resp.content_type)] = prefix
    if not resp.headers and keep_alive:  # the common case: one concatenation
        return prefix + str(length).encode() + b"\r\n\r\n"
    lines = [prefix, str(length).encode(), b"\r\n"]
    if resp.headers:
        for k, v in resp.headers.items():
            lines.append(f"{k}: {v}\r\n".encode())
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.clock = server.clock
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_size = 0
        self.header_bytes = 0
        self.expected = 0
        self.in_message = False
        self.discarding = False  # a 413 was sent: ignore the rest of this connection
        self.pending: deque[tuple[HttpRequest, bool]] = deque()
        self.busy = False
        self.keep_alive = True  # of the request being answered
        self.last_activity = self.clock()
        self.paused = False
        self.deferred_reject: tuple[int, str] | None = None
        # what is being answered: a task (a coroutine or a stream), or the app's future
        self.task: asyncio.Task[None] | None = None
        self.waiting: Withdrawable | None = None  # a request the app answers later
        self.answer = server.answer
        self.replies = server.replies

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        # nobody is left to read the answer: leave the queue (counted as cancelled);
        # this is also how a gRPC deadline reaches us through the front process
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.waiting is not None:
            self.waiting.cancel()
            self.waiting = None

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.clock()
        if self.discarding:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}")

    # --- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.header_bytes = 0
        self.headers = {}
        self.body = []
        self.body_size = 0
        self.expected = 0
        self.in_message = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        key = _HEADER_NAMES.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(_HEADER_NAMES) < 256 and len(name) <= 64:  # bounded, whatever is sent
                _HEADER_NAMES[name] = key
        self.headers[key] = value.decode("latin-1")
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.server.max_header_bytes:
            self._count_header(0)

    def _count_header(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > self.server.max_header_bytes and not self.discarding:
            self._reject(
                431,
                f"request line and headers exceed {self.server.max_header_bytes} bytes "
                "(--max-header-bytes)",
            )

    def on_headers_complete(self) -> None:
        if self.discarding:
            return
        length = self.headers.get("content-length")
        limit = self.server.max_request_bytes
        if length is not None:
            try:
                self.expected = int(length)
            except ValueError:
                self._reject(400, "invalid Content-Length")
                return
            if self.expected > limit:
                self._reject(
                    413, f"request body of {self.expected} bytes exceeds the limit of {limit} bytes"
                )
                return
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        if self.discarding:
            return
        self.body_size += len(chunk)
        if self.body_size > self.server.max_request_bytes:
            self._reject(
                413,
                f"request body exceeds the limit of {self.server.max_request_bytes} bytes",
            )
            return
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        if self.discarding:
            return
        self.in_message = False
        raw = self.url
        if raw[:1] == b"/" and b"?" not in raw and b"#" not in raw:  # a plain path
            path, query = raw.decode("latin-1"), ""
        else:
            url = httptools.parse_url(raw)
            path, query = url.path.decode("latin-1"), (url.query or b"").decode("latin-1")
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        method = self.parser.get_method()
        request = HttpRequest(
            _METHODS.get(method) or method.decode(), path, query, self.headers, body
        )
        keep_alive = self.parser.should_keep_alive() and not self.server.draining
        if self.busy:
            self.pending.append((request, keep_alive))
            if len(self.pending) > 16 and self.transport and not self.paused:
                self.paused = True
                self.transport.pause_reading()
        else:
            self._answer(request, keep_alive)

    # --- answering ------------------------------------------------------------------------

    def _answer(self, request: HttpRequest, keep_alive: bool) -> None:
        """Answer this request and the ones pipelined behind it, in turn: at once when the
        app answers at once (no task: an inference a cheap model ran on the spot), else
        when it replies, or when the coroutine it returned is done."""
        while True:
            self.busy = True
            self.keep_alive = keep_alive  # the one request being answered: `_replied`'s
            try:
                result = (
                    self.answer(request, self._replied) if self.replies else self.answer(request)
                )
            except Exception:  # the app renders its own errors; this is a last resort
                log.exception("unhandled error answering %s %s", request.method, request.path)
                result = error_response(500, "internal server error")
            if not isinstance(result, HttpResponse):
                if hasattr(result, "cancel"):  # answered later, through `reply`
                    self.waiting = result
                else:  # a coroutine
                    loop = asyncio.get_running_loop()
                    self.task = loop.create_task(self._await(result, request, keep_alive))
                return
            following = self._respond(result, keep_alive)
            if following is None:
                return
            request, keep_alive = following

    def _replied(self, response: HttpResponse) -> None:
        """The app's later answer to the request being answered (called on the loop, maybe
        inside the model's pump: a pipelined request behind it starts on the next loop
        pass, not inside it)."""
        self.waiting = None
        following = self._respond(response, self.keep_alive)  # None if the connection was lost
        if following is not None:
            asyncio.get_running_loop().call_soon(self._answer, *following)

    async def _await(
        self, pending: Awaitable[HttpResponse], request: HttpRequest, keep_alive: bool
    ) -> None:
        try:
            response = await pending
        except Exception:
            log.exception("unhandled error answering %s %s", request.method, request.path)
            response = error_response(500, "internal server error")
        following = self._respond(response, keep_alive)
        if following is not None:
            self._answer(*following)

    def _respond(self, response: HttpResponse, keep_alive: bool) -> tuple[HttpRequest, bool] | None:
        """Write a response; the next pipelined request to answer, if any."""
        if self.transport is None:
            return None
        keep_alive = keep_alive and not self.server.draining
        if response.stream is not None:
            loop = asyncio.get_running_loop()
            self.task = loop.create_task(self._stream(response, keep_alive))
            return None
        self._write(response, keep_alive)
        return self._next(keep_alive)

    async def _stream(self, response: HttpResponse, keep_alive: bool) -> None:
        if not await self._write_stream(response, keep_alive):
            return
        following = self._next(keep_alive)
        if following is not None:
            self._answer(*following)

    def _next(self, keep_alive: bool) -> tuple[HttpRequest, bool] | None:
        assert self.transport is not None
        if not keep_alive:
            self.transport.close()
            return None
        if not self.pending:
            self.busy = False
            if self.deferred_reject is not None:
                self._write(error_response(*self.deferred_reject), keep_alive=False)
                self.transport.close()
            return None
        following = self.pending.popleft()
        if self.paused and len(self.pending) < 4:
            self.paused = False
            self.transport.resume_reading()
        return following

    def _write(self, response: HttpResponse, keep_alive: bool) -> None:
        assert self.transport is not None
        body = response.body
        if len(body) == 1 and type(body[0]) is bytes:  # the common case
            length = len(body[0])
        else:
            length = sum(len(memoryview(b)) for b in body)
        head = _head(response, length, keep_alive)
        if len(body) == 1 and length < 65536:
            self.transport.write(head + bytes(body[0]))
        else:
            self.transport.writelines([head, *response.body])
        self.last_activity = self.clock()

    async def _write_stream(self, response: HttpResponse, keep_alive: bool) -> bool:
        """Chunked: each piece goes out as it comes. False if the client went away."""
        assert self.transport is not None and response.stream is not None
        head = _head(response, 0, keep_alive).replace(
            b"content-length: 0\r\n", b"transfer-encoding: chunked\r\n"
        )
        self.transport.write(head)
        async for piece in response.stream:
            if self.transport is None:
                return False
            if piece:
                self.transport.writelines([f"{len(piece):x}\r\n".encode(), piece, b"\r\n"])
        if self.transport is None:
            return False
        self.transport.write(b"0\r\n\r\n")
        self.last_activity = self.clock()
        return True

    def _reject(self, status: int, message: str) -> None:
        """Answer an error the request cannot recover from, then close the connection."""
        self.discarding = True
        if self.transport is not None:
            if not self.busy:
                self._write(error_response(status, message), keep_alive=False)
                self.transport.close()
            else:  # answered after the in-flight responses, in order
                self.deferred_reject = (status, message)

    def check_timeouts(self, now: float) -> None:
        if self.transport is None or self.busy:
            return
        idle = now - self.last_activity
        if self.in_message and idle > self.server.read_timeout_s:
            got = self.body_size
            self._reject(
                408,
                f"request body incomplete after {self.server.read_timeout_s:g} s: received "
                f"{got} of {self.expected or 'unknown'} bytes",
            )
        elif not self.in_message and (
            idle > self.server.keepalive_timeout_s or self.server.draining
        ):
            self.transport.close()


class HttpServer:
    def __init__(
        self,
        app: App,
        host: str,
        port: int,
        max_request_bytes: int,
        read_timeout_s: float = 30.0,
        keepalive_timeout_s: float = 60.0,
        unix_path: str | None = None,
        sock: socket.socket | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_header_bytes: int = 16 * 1024,
    ) -> None:
        self.app = app
        # an app with `answer(request, reply)` may answer at once (an HttpResponse) or
        # call `reply` later (returning what withdraws it); any other app's coroutine
        # runs in a task
        self.replies = hasattr(app, "answer")
        self.answer: Any = app.answer if self.replies else app  # type: ignore[attr-defined]
        self.max_header_bytes = max_header_bytes
        self.ssl = ssl_context  # TLS on this listener (conveyor.security.Tls)
        self.unix_path = unix_path  # listen on this Unix socket instead of host:port
        self.sock = sock  # or on this bound TCP socket (closed at shutdown)
        self.host = host
        self.port = port
        self.max_request_bytes = max_request_bytes
        self.read_timeout_s = read_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self.connections: set[_Connection] = set()
        self.draining = False
        self.clock: Callable[[], float] = time.monotonic  # the loop's, once started
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.clock = loop.time
        if self.sock is not None:
            self._server = await loop.create_server(
                lambda: _Connection(self), sock=self.sock, backlog=1024, ssl=self.ssl
            )
            self.port = self.sock.getsockname()[1]
        elif self.unix_path is not None:
            self._server = await loop.create_unix_server(
                lambda: _Connection(self), self.unix_path, backlog=1024
            )
        else:
            self._server = await loop.create_server(
                lambda: _Connection(self),
                self.host,
                self.port,
                reuse_address=True,
                backlog=1024,
                ssl=self.ssl,
            )
            self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = self.clock()
            for conn in list(self.connections):
                conn.check_timeouts(now)

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, let in-flight requests finish (bounded), then close everything."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        deadline = self.clock() + timeout_s
        # in flight = being answered, or partly received (its client is still sending)
        while any(c.busy or c.in_message for c in self.connections) and self.clock() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
