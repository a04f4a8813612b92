"""KServe V2 gRPC (`inference.GRPCInferenceService`): decode, call the data plane, encode.

Errors become gRPC status codes through `errors.GRPC_CODES` (the one HTTP -> gRPC table).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from conveyor.dataplane import DataPlane
from conveyor.errors import GRPC_CODES, ConveyorError, InvalidRequestError
from conveyor.grpc import inference_pb2 as pb
from conveyor.grpc import inference_pb2_grpc as pb_grpc
from conveyor.grpc.streams import as_completed
from conveyor.protocol import v2_grpc
from conveyor.sharedmem import CUDA_SHM_UNSUPPORTED

log = logging.getLogger("conveyor.grpc")

T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


async def run_on(loop: asyncio.AbstractEventLoop | None, coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` on `loop`, hopping threads when it is not the running loop's."""
    if loop is None or loop is asyncio.get_running_loop():
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


async def _on_loop(
    loop: asyncio.AbstractEventLoop | None, stream: AsyncIterator[T]
) -> AsyncIterator[T]:
    """Iterate `stream` (an async generator living on `loop`) from the running loop."""
    if loop is None or loop is asyncio.get_running_loop():
        async for item in stream:
            yield item
        return
    while True:
        try:
            item = await run_on(loop, stream.__anext__())  # type: ignore[arg-type]
        except StopAsyncIteration:
            return
        yield item


def status_of(exc: ConveyorError) -> grpc.StatusCode:
    code: grpc.StatusCode = getattr(grpc.StatusCode, GRPC_CODES.get(exc.status, "INTERNAL"))
    return code


def _rpc(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Translate the data plane's errors into gRPC statuses, in one place."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await method(self, request, context)
        except ConveyorError as exc:
            code, message = status_of(exc), exc.message
        except Exception:
            log.exception("internal error in %s", method.__name__)
            code, message = grpc.StatusCode.INTERNAL, "internal server error"
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    return wrapper


def _parse(message: Any, value: dict[str, Any]) -> Any:
    return json_format.ParseDict(value, message, ignore_unknown_fields=True)


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, home: asyncio.AbstractEventLoop) -> None:
        self.dataplane = dataplane
        self.home = home  # the data plane's loop; gRPC may run on another one

    async def _on_home(self, coro: Coroutine[Any, Any, T]) -> T:
        return await run_on(self.home, coro)

    @_rpc
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    @_rpc
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.dataplane.ready)

    @_rpc
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> Any:
        try:
            ready = self.dataplane.model_ready(request.name, request.version)
        except ConveyorError as exc:
            if exc.status != 503:
                raise
            ready = False
        return pb.ModelReadyResponse(ready=ready)

    @_rpc
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> Any:
        return _parse(pb.ServerMetadataResponse(), self.dataplane.server_metadata())

    @_rpc
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> Any:
        meta = self.dataplane.model_metadata(request.name, request.version)
        return _parse(pb.ModelMetadataResponse(), meta)

    @_rpc
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> Any:
        config = self.dataplane.model_config(request.name, request.version)
        return pb.ModelConfigResponse(config=_parse(pb.ModelConfig(), config))

    @_rpc
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> Any:
        stats = self.dataplane.statistics(request.name, request.version)
        return _parse(pb.ModelStatisticsResponse(), {"model_stats": stats})

    @_rpc
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        self.dataplane.check_started()
        response = await self._on_home(self.dataplane.infer(v2_grpc.decode_request(request)))
        return v2_grpc.encode_response(response)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests are served concurrently; each answer (or error) is sent as it is ready,
        carrying its request's id; a decoupled model's answers each as the model sends it."""
        async for out in as_completed(requests, self.stream_answers):
            yield out

    async def stream_answers(
        self, msg: pb.ModelInferRequest
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Every stream message for one request: its responses, or one error. As Triton
        does, a final flag with no outputs is sent only when the request asks for it
        (`triton_enable_empty_final_response`)."""
        try:
            self.dataplane.check_started()
            request = v2_grpc.decode_request(msg)
            empty_final = bool(request.parameters.get("triton_enable_empty_final_response"))
            decoupled = self.dataplane.is_decoupled(request.model, request.version)
            async for response in _on_loop(self.home, self.dataplane.infer_stream(request)):
                if not decoupled:
                    response.parameters.pop("triton_final_response", None)
                elif not response.outputs and not empty_final:
                    continue
                yield pb.ModelStreamInferResponse(infer_response=v2_grpc.encode_response(response))
            return
        except ConveyorError as exc:
            out = pb.ModelStreamInferResponse(error_message=exc.message)
            out.infer_response.id = msg.id
            out.infer_response.model_name = msg.model_name
        except Exception:
            log.exception("internal error in ModelStreamInfer")
            out = pb.ModelStreamInferResponse(error_message="internal server error")
            out.infer_response.id = msg.id
        yield out

    @_rpc
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> Any:
        rows = self.dataplane.repository_index()
        if request.ready:
            rows = [r for r in rows if r["state"] == "READY"]
        return _parse(pb.RepositoryIndexResponse(), {"models": rows})

    @_rpc
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> Any:
        params = {
            k: getattr(v, v.WhichOneof("parameter_choice") or "string_param")
            for k, v in request.parameters.items()
        }
        config = params.get("config")
        await self._on_home(self.dataplane.load_model(request.model_name, config or None))
        return pb.RepositoryModelLoadResponse()

    @_rpc
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> Any:
        await self._on_home(self.dataplane.unload_model(request.model_name))
        return pb.RepositoryModelUnloadResponse()

    @_rpc
    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: Any
    ) -> Any:
        regions = self.dataplane.shm.status(request.name)
        return _parse(pb.SystemSharedMemoryStatusResponse(), {"regions": regions})

    @_rpc
    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: Any
    ) -> Any:
        self.dataplane.shm.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    @_rpc
    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Any
    ) -> Any:
        self.dataplane.shm.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    @_rpc
    async def CudaSharedMemoryStatus(
        self, request: pb.CudaSharedMemoryStatusRequest, context: Any
    ) -> Any:
        return pb.CudaSharedMemoryStatusResponse()

    @_rpc
    async def CudaSharedMemoryRegister(
        self, request: pb.CudaSharedMemoryRegisterRequest, context: Any
    ) -> Any:
        raise InvalidRequestError(CUDA_SHM_UNSUPPORTED)

    @_rpc
    async def CudaSharedMemoryUnregister(
        self, request: pb.CudaSharedMemoryUnregisterRequest, context: Any
    ) -> Any:
        return pb.CudaSharedMemoryUnregisterResponse()
