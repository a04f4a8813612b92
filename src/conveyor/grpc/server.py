"""The gRPC listener: `grpc.aio` with the KServe V2 service and the standard
`grpc.health.v1.Health` service (kept in step with /v2/health/ready).

This is gRPC inside the server process (`--grpc-front thread` or `loop`); the default
is a front process of its own (process.py), chosen by measurement. On the HTTP server's
event loop (`loop`), `grpc.aio` starves under HTTP load (it advances each call by one
step per loop pass, and every pass serves all busy HTTP connections first): gRPC fell
to about 10% of its solo rate, its p99 to 8x its solo p99. On an event loop of its own
in its own thread (`thread`), inference calls hop to the data plane's loop, so requests
from both protocols still meet in one batcher, but grpc's bindings share the GIL with
the HTTP loop: HTTP kept 24-33% of its solo rate under mixed load.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from conveyor.dataplane import DataPlane
from conveyor.grpc import inference_pb2_grpc as pb_grpc
from conveyor.grpc.auth import AuthInterceptor
from conveyor.grpc.service import InferenceService, run_on
from conveyor.security import Security, Tls

log = logging.getLogger("conveyor.grpc")

SERVICE = "inference.GRPCInferenceService"
T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class GrpcServer:
    def __init__(
        self,
        dataplane: DataPlane,
        host: str,
        port: int,
        max_message_bytes: int,
        same_loop: bool = False,
        security: Security | None = None,
        tls: Tls | None = None,
    ) -> None:
        self.dataplane = dataplane
        self.security = security  # None: open (the server passes None for no tokens)
        self.tls = tls
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.same_loop = same_loop
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # gRPC's own loop, if any
        self._thread: threading.Thread | None = None

    async def _on_grpc_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return await run_on(self._loop, coro)

    async def start(self) -> None:
        home = asyncio.get_running_loop()
        if not self.same_loop:
            self._loop = _new_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="conveyor-grpc", daemon=True
            )
            self._thread.start()
        await self._on_grpc_loop(self._start(home))

    async def _start(self, home: asyncio.AbstractEventLoop) -> None:
        options = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ]
        interceptors = [AuthInterceptor(self.security)] if self.security is not None else None
        self._server = grpc.aio.server(options=options, interceptors=interceptors)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            InferenceService(self.dataplane, home), self._server
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        address = f"{self.host}:{self.port}"
        if self.tls is not None:
            credentials = self.tls.grpc_credentials()
            self.port = self._server.add_secure_port(address, credentials)
        else:
            self.port = self._server.add_insecure_port(address)
        await self._server.start()
        await self._set_serving(False)

    async def set_serving(self, serving: bool) -> None:
        await self._on_grpc_loop(self._set_serving(serving))

    async def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE):
            await self._health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        if self._server is not None:
            await self.set_serving(False)
            await self._on_grpc_loop(self._server.stop(grace_s))
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join, 5)
            self._loop.close()
            self._loop = None
