"""The server's side of the front-process bridge, driven without a network."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from conveyor.grpc import inference_pb2 as pb
from conveyor.grpc.bridge import (
    HEALTH_CHECK,
    STATUS_HEADER,
    STREAM_FRAME,
    BridgeApp,
    service_methods,
)
from conveyor.grpc.service import InferenceService
from conveyor.http.server import HttpRequest, HttpResponse
from tests.test_dataplane import plane

INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"


async def bridge(tmp_path: Path) -> BridgeApp:
    dp = await plane(tmp_path)
    return BridgeApp(InferenceService(dp, asyncio.get_running_loop()))


async def post(app: BridgeApp, path: str, body: bytes) -> HttpResponse:
    return await app(HttpRequest("POST", path, "", {}, body))


def body(resp: HttpResponse) -> bytes:
    return b"".join(bytes(b) for b in resp.body)


async def streamed(resp: HttpResponse) -> list[bytes]:
    """The messages of a streamed answer (each `<u32 length><message>`)."""
    assert resp.stream is not None and not resp.body
    messages = []
    async for piece in resp.stream:
        (n,) = STREAM_FRAME.unpack_from(piece)
        assert len(piece) == STREAM_FRAME.size + n
        messages.append(piece[STREAM_FRAME.size :])
    return messages


def infer_request(rows: int = 1) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="m", id="r1")
    req.inputs.add(name="x", datatype="FP32", shape=[rows, 4])
    req.raw_input_contents.append(np.arange(4 * rows, dtype=np.float32).tobytes())
    return req


def test_every_method_is_known_with_its_kind() -> None:
    methods = service_methods()
    assert methods[STREAM] is True
    assert methods[INFER] is False
    assert "/inference.GRPCInferenceService/RepositoryModelLoad" in methods


async def test_a_forwarded_call_is_answered_by_the_service(tmp_path: Path) -> None:
    app = await bridge(tmp_path)
    resp = await post(app, INFER, infer_request().SerializeToString())
    assert resp.status == 200 and not (resp.headers or {}).get(STATUS_HEADER)
    reply = pb.ModelInferResponse.FromString(body(resp))
    assert reply.id == "r1" and reply.outputs[0].name == "y"


async def test_errors_carry_the_grpc_status(tmp_path: Path) -> None:
    app = await bridge(tmp_path)
    req = infer_request()
    req.model_name = "nope"
    resp = await post(app, INFER, req.SerializeToString())
    assert (resp.headers or {})[STATUS_HEADER] == str(grpc.StatusCode.NOT_FOUND.value[0])
    assert "nope" in body(resp).decode()
    resp = await post(app, INFER, b"\xff\xff\xff")
    assert (resp.headers or {})[STATUS_HEADER] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])
    resp = await post(app, "/inference.GRPCInferenceService/Nope", b"")
    assert (resp.headers or {})[STATUS_HEADER] == str(grpc.StatusCode.UNIMPLEMENTED.value[0])


async def test_a_stream_message_gets_its_one_answer_or_in_stream_error(tmp_path: Path) -> None:
    app = await bridge(tmp_path)
    [reply] = await streamed(await post(app, STREAM, infer_request().SerializeToString()))
    ok = pb.ModelStreamInferResponse.FromString(reply)
    assert not ok.error_message and ok.infer_response.id == "r1"
    bad = infer_request()
    bad.inputs[0].datatype = "INT32"
    [reply] = await streamed(await post(app, STREAM, bad.SerializeToString()))
    err = pb.ModelStreamInferResponse.FromString(reply)
    assert "expected datatype FP32" in err.error_message and err.infer_response.id == "r1"


async def test_health_follows_serving(tmp_path: Path) -> None:
    app = await bridge(tmp_path)

    async def status(service: str = "") -> int:
        req = health_pb2.HealthCheckRequest(service=service).SerializeToString()
        resp = await post(app, HEALTH_CHECK, req)
        if (resp.headers or {}).get(STATUS_HEADER):
            return -int((resp.headers or {})[STATUS_HEADER])
        return int(health_pb2.HealthCheckResponse.FromString(body(resp)).status)

    assert await status() == health_pb2.HealthCheckResponse.NOT_SERVING
    app.serving = True
    assert await status("inference.GRPCInferenceService") == health_pb2.HealthCheckResponse.SERVING
    assert await status("other") == -grpc.StatusCode.NOT_FOUND.value[0]
