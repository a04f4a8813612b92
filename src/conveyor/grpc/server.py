"""The gRPC listener: `grpc.aio` on the server's event loop, with the KServe V2 service
and the standard `grpc.health.v1.Health` service (kept in step with /v2/health/ready)."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from conveyor.dataplane import DataPlane
from conveyor.grpc import inference_pb2_grpc as pb_grpc
from conveyor.grpc.service import InferenceService

log = logging.getLogger("conveyor.grpc")

SERVICE = "inference.GRPCInferenceService"


class GrpcServer:
    def __init__(self, dataplane: DataPlane, host: str, port: int, max_message_bytes: int) -> None:
        self.dataplane = dataplane
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()

    async def start(self) -> None:
        options = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ]
        self._server = grpc.aio.server(options=options)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            InferenceService(self.dataplane), self._server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.port = self._server.add_insecure_port(f"{self.host}:{self.port}")
        await self._server.start()
        await self.set_serving(False)

    async def set_serving(self, serving: bool) -> None:
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
            await self._server.stop(grace_s)
