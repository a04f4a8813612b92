"""Targets: one small class per kind of endpoint, behind one interface.

`call()` sends one request and returns when its answer is complete; a failed request
raises `TargetError` whose `kind` groups errors in the results. Targets keep their
connections open (one per concurrent request), so what is measured is the server, not
connection set-up.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import numpy as np


class TargetError(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


class Target(ABC):
    name = "target"

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare (connect lazily, fetch metadata, build the request)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abstractmethod
    async def call(self) -> None:
        """One request, complete; raises TargetError on failure."""


class SizedTarget(Target):
    """Requests of varying batch sizes (a trace with sizes): one target per size, built
    by `make(size)` on first use and kept open."""

    def __init__(self, make: Callable[[int], Target], default: int) -> None:
        self.make = make
        self.default = default
        self.by_size: dict[int, Target] = {}
        self.name = make(default).name

    async def target(self, size: int) -> Target:
        target = self.by_size.get(size)
        if target is None:
            target = self.by_size[size] = self.make(size)
            await target.open()
        return target

    async def call(self) -> None:
        await (await self.target(self.default)).call()

    async def call_sized(self, size: int) -> None:
        await (await self.target(size)).call()

    async def close(self) -> None:
        for target in self.by_size.values():
            await target.close()
        self.by_size.clear()


@dataclass
class NullTarget(Target):
    """Answers after `delay_s` without any I/O: the generator's own ceiling, and a fake."""

    delay_s: float = 0.0
    name = "null"

    async def call(self) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)


class _Response(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.body: list[bytes] = []
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(TargetError("connection", "closed by the server"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(TargetError("protocol", str(exc)))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():  # `connection: close`: not reused
            self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    async def send(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.body = []
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        status = await self.waiter
        return status, b"".join(self.body)


@dataclass
class HttpTarget(Target):
    """POST a fixed body to a URL (any HTTP service: a request template)."""

    url: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    name = "http"

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._idle: list[_Response] = []
        self._all: list[_Response] = []
        self._request = b""

    def _build(self) -> bytes:
        lines = [
            f"{self.method} {self.path} HTTP/1.1",
            f"host: {self.host}:{self.port}",
            f"content-length: {len(self.body)}",
        ]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    async def open(self) -> None:
        self._request = self._build()

    async def _connection(self) -> _Response:
        while self._idle:
            conn = self._idle.pop()
            if not conn.lost:
                return conn
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Response, self.host, self.port)
        except OSError as exc:
            raise TargetError("connect", exc.strerror or str(exc)) from None
        self._all.append(conn)
        return conn

    async def call(self) -> None:
        conn = await self._connection()
        status, body = await conn.send(self._request)
        self._idle.append(conn)
        if status != 200:
            raise TargetError(f"http {status}", body[:200].decode(errors="replace"))

    async def close(self) -> None:
        for conn in self._all:  # idle ones, and any cut off mid-request at the end
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
        self._all.clear()


def _json_data(name: str, a: np.ndarray) -> list[Any]:
    if a.dtype.kind not in "OSU":
        return list(a.reshape(-1).tolist())
    try:
        return [x.decode() if isinstance(x, bytes) else str(x) for x in a.reshape(-1)]
    except UnicodeDecodeError:
        raise ValueError(
            f"input {name!r}: BYTES that are not UTF-8 text (an image, say) have no JSON form; "
            "use --protocol v2-binary or v2-grpc"
        ) from None


def raw_tensor(a: np.ndarray) -> bytes:
    """A tensor's raw bytes as the V2 binary extension and gRPC carry them (BYTES: each
    element with its 4-byte length)."""
    from conveyor.protocol.tensors import to_bytes

    return bytes(to_bytes(a))


def v2_body(inputs: dict[str, np.ndarray], binary: bool) -> tuple[bytes, dict[str, str]]:
    """A KServe V2 infer body (JSON or Triton's binary tensors) and its headers."""
    from conveyor.datatypes import v2_datatype

    if not binary:
        doc = {
            "inputs": [
                {
                    "name": n,
                    "shape": list(a.shape),
                    "datatype": v2_datatype(a.dtype),
                    "data": _json_data(n, a),
                }
                for n, a in inputs.items()
            ]
        }
        return json.dumps(doc).encode(), {"content-type": "application/json"}
    raws = {n: raw_tensor(a) for n, a in inputs.items()}
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": n,
                    "shape": list(a.shape),
                    "datatype": v2_datatype(a.dtype),
                    "parameters": {"binary_data_size": len(raws[n])},
                }
                for n, a in inputs.items()
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    raw = b"".join(raws.values())
    return header + raw, {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


class GrpcV2Target(Target):
    """KServe V2 gRPC ModelInfer with raw tensors, on one HTTP/2 channel."""

    name = "grpc"

    def __init__(
        self, address: str, model: str, inputs: dict[str, np.ndarray], version: str = ""
    ) -> None:
        from conveyor.datatypes import v2_datatype
        from conveyor.grpc import inference_pb2 as pb

        self.address = address
        self.request = pb.ModelInferRequest(model_name=model, model_version=version)
        for name, arr in inputs.items():
            self.request.inputs.add(name=name, datatype=v2_datatype(arr.dtype), shape=arr.shape)
            self.request.raw_input_contents.append(raw_tensor(arr))
        self.name = f"grpc:{model}"
        self.payload = self.request.SerializeToString()  # once: every call sends these bytes
        self._channel: object = None
        self._call: object = None

    async def open(self) -> None:
        import grpc

        channel = grpc.aio.insecure_channel(self.address)
        self._channel = channel
        # bytes in, bytes out: the generator neither serializes nor parses per call (an
        # answer is judged by its status, as over HTTP), so less of its CPU is spent
        self._call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

    async def call(self) -> None:
        import grpc

        try:
            await self._call(self.payload)  # type: ignore[operator]
        except grpc.aio.AioRpcError as exc:
            raise TargetError(f"grpc {exc.code().name}", exc.details() or "") from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()  # type: ignore[attr-defined]


def tfserving_body(inputs: dict[str, np.ndarray]) -> bytes:
    """A TF Serving `:predict` body in row format ("instances")."""
    names = list(inputs)
    rows = len(next(iter(inputs.values())))

    def value(a: np.ndarray) -> object:
        if a.dtype.kind == "O":
            return [x.decode(errors="replace") if isinstance(x, bytes) else x for x in a]
        return a.tolist()

    if len(names) == 1:
        instances = [value(inputs[names[0]][i]) for i in range(rows)]
    else:
        instances = [{n: value(inputs[n][i]) for n in names} for i in range(rows)]
    return json.dumps({"instances": instances}).encode()


class CallableTarget(Target):
    """An in-process Python function, `module:function`, called with the inputs (local
    calls without RPC). Coroutine functions are awaited; plain ones run in a thread."""

    def __init__(self, spec: str, inputs: dict[str, np.ndarray]) -> None:
        import importlib
        import inspect

        module_name, _, attr = spec.partition(":")
        if not attr:
            raise ValueError(f"expected module:function, got {spec!r}")
        self.fn = getattr(importlib.import_module(module_name), attr)
        self.is_async = inspect.iscoroutinefunction(self.fn)
        self.inputs = inputs
        self.name = f"python:{spec}"

    async def call(self) -> None:
        try:
            if self.is_async:
                await self.fn(self.inputs)
            else:
                await asyncio.to_thread(self.fn, self.inputs)
        except Exception as exc:
            raise TargetError(type(exc).__name__, str(exc)) from None
