"""The HTTP/1.1 layer over raw sockets: keep-alive, pipelining, 100-continue, chunked
bodies, size limits, malformed and stalled requests, graceful shutdown.

Each test runs server and client on a loop whose clock the test drives
(`tests/virtual_time.py`): the slow answer, the read timeout and the shutdown deadline
are exact, whatever the machine's load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest

from conveyor.http.server import HttpRequest, HttpResponse, HttpServer
from tests.virtual_time import virtual


class Echo:
    """The app: describes the request it got; /boom crashes; /slow answers after 0.3 s."""

    def __init__(self) -> None:
        self.slow_started = asyncio.Event()  # a /slow request is being answered

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/boom":
            raise RuntimeError("secret detail")
        if request.path == "/slow":
            self.slow_started.set()
            await asyncio.sleep(0.3)
        doc = {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "size": len(request.body),
            "body": request.body.decode(errors="replace")[:20],
        }
        return HttpResponse(200, [orjson.dumps(doc)])


@asynccontextmanager
async def running(**kw: float) -> AsyncIterator[HttpServer]:
    server = HttpServer(Echo(), "127.0.0.1", 0, max_request_bytes=1000, **kw)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown(1.0)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


@virtual
async def test_keep_alive_and_pipelining_answer_in_order() -> None:
    async with running() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n"
            b"POST /b?q=1 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"
        )
        s1, _, b1 = await read_response(reader)
        _s2, _, b2 = await read_response(reader)
        assert (s1, orjson.loads(b1)["path"]) == (200, "/slow")
        assert orjson.loads(b2) == {
            "method": "POST",
            "path": "/b",
            "query": "q=1",
            "size": 3,
            "body": "abc",
        }
        writer.write(b"GET /again HTTP/1.1\r\nhost: x\r\n\r\n")  # same connection still open
        assert (await read_response(reader))[0] == 200
        writer.close()


@virtual
async def test_expect_100_continue_and_chunked_body() -> None:
    async with running() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /c HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
        )
        assert (await reader.readline()).startswith(b"HTTP/1.1 100")
        await reader.readline()
        writer.write(b"data")
        assert orjson.loads((await read_response(reader))[2])["size"] == 4
        writer.write(
            b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        assert orjson.loads((await read_response(reader))[2])["body"] == "abcde"
        writer.close()


@virtual
async def test_oversized_bodies_get_413_and_the_server_goes_on() -> None:
    async with running() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert status == 413 and headers["connection"] == "close"
        assert "5000 bytes exceeds the limit of 1000" in orjson.loads(body)["error"]
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        chunk = b"400\r\n" + b"a" * 1024 + b"\r\n"
        writer.write(b"POST /x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" + chunk)
        assert (await read_response(reader))[0] == 413
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        writer.close()


@virtual
async def test_malformed_request_is_400() -> None:
    async with running() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == 400 and "malformed HTTP request" in orjson.loads(body)["error"]
        writer.close()


@virtual
async def test_stalled_body_gets_408() -> None:
    async with running(read_timeout_s=0.3) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        writer.write(b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly-part")
        status, _, body = await asyncio.wait_for(read_response(reader), 5)
        assert status == 408
        assert loop.time() - sent >= 0.3  # the body had its read timeout to arrive
        assert "received 9 of 100 bytes" in orjson.loads(body)["error"]
        writer.close()


@virtual
async def test_app_crash_is_a_generic_500() -> None:
    async with running() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == 500 and b"secret" not in body
        writer.close()


@virtual
async def test_shutdown_finishes_in_flight_requests() -> None:
    app = Echo()
    server = HttpServer(app, "127.0.0.1", 0, max_request_bytes=1000)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
    await asyncio.wait_for(app.slow_started.wait(), 5)  # in flight when the shutdown begins
    stopping = asyncio.ensure_future(server.shutdown(5.0))
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers["connection"] == "close"
    writer.close()
    await stopping
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


class Answering:
    """An app with `answer(request, reply)`: /now answers at once, /later through
    `reply` when the test says, /coro through a coroutine; records withdrawals."""

    def __init__(self) -> None:
        self.later: list[tuple[str, object]] = []  # (path, reply) waiting for the test
        self.withdrawn: list[str] = []

    def answer(self, request: HttpRequest, reply: object) -> object:
        if request.path == "/now":
            return HttpResponse(200, [b'"now"'])
        if request.path == "/coro":
            return self.coro()
        app = self

        class Withdraw:
            def cancel(self) -> bool:
                app.withdrawn.append(request.path)
                return True

        self.later.append((request.path, reply))
        return Withdraw()

    async def coro(self) -> HttpResponse:
        await asyncio.sleep(0)
        return HttpResponse(200, [b'"coro"'])


@virtual
async def test_an_app_answers_at_once_later_or_through_a_coroutine_in_order() -> None:
    app = Answering()
    server = HttpServer(app, "127.0.0.1", 0, max_request_bytes=1000)  # type: ignore[arg-type]
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /now HTTP/1.1\r\nhost: x\r\n\r\n")
        assert await read_response(reader) == (
            200,
            {"content-type": "application/json", "content-length": "5"},
            b'"now"',
        )
        # pipelined: /later, then /now and /coro behind it, answered in order
        writer.write(
            b"GET /later HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /now HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /coro HTTP/1.1\r\nhost: x\r\n\r\n"
        )
        while not app.later:
            await asyncio.sleep(0.01)
        path, reply = app.later.pop()
        assert path == "/later"
        reply(HttpResponse(201, [b'"later"']))  # type: ignore[operator]
        assert (await read_response(reader))[::2] == (201, b'"later"')
        assert (await read_response(reader))[::2] == (200, b'"now"')
        assert (await read_response(reader))[::2] == (200, b'"coro"')
        # a client that hangs up withdraws the request it waits for
        writer.write(b"GET /later HTTP/1.1\r\nhost: x\r\n\r\n")
        while not app.later:
            await asyncio.sleep(0.01)
        writer.close()
        while not app.withdrawn:
            await asyncio.sleep(0.01)
        assert app.withdrawn == ["/later"]
        app.later.pop()[1](HttpResponse(200, [b"late"]))  # type: ignore[operator]  # no-op
    finally:
        await server.shutdown(1.0)
