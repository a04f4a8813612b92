"""A null KServe V2 gRPC target: model `null` (input `x`, FP32 [-1,4]) answered with
canned, pre-serialized messages (no parsing): the cheapest Python gRPC server, for
measuring load generators against the same target over gRPC, and the ceiling of a
Python gRPC front (benchmarks/grpc_ceiling.py; `--width 256` answers as `linear` does).

    python benchmarks/null_grpc.py --port 8401 [--width 4]
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc
import uvloop

from conveyor.grpc import inference_pb2 as pb

SERVICE = "inference.GRPCInferenceService"


def _answers(width: int = 4) -> dict[str, bytes]:
    meta = pb.ModelMetadataResponse(name="null", versions=["1"], platform="null")
    meta.inputs.add(name="x", datatype="FP32", shape=[-1, 4])
    meta.outputs.add(name="y", datatype="FP32", shape=[-1, 4])
    config = pb.ModelConfigResponse(
        config=pb.ModelConfig(name="null", platform="null", max_batch_size=8)
    )
    config.config.input.add(name="x", data_type=pb.TYPE_FP32, dims=[4])
    config.config.output.add(name="y", data_type=pb.TYPE_FP32, dims=[4])
    infer = pb.ModelInferResponse(model_name="null", model_version="1")
    infer.outputs.add(name="y", datatype="FP32", shape=[1, width])
    infer.raw_output_contents.append(bytes(4 * width))
    return {
        "ServerLive": pb.ServerLiveResponse(live=True).SerializeToString(),
        "ServerReady": pb.ServerReadyResponse(ready=True).SerializeToString(),
        "ServerMetadata": pb.ServerMetadataResponse(name="null", version="1").SerializeToString(),
        "ModelReady": pb.ModelReadyResponse(ready=True).SerializeToString(),
        "ModelMetadata": meta.SerializeToString(),
        "ModelConfig": config.SerializeToString(),
        "ModelInfer": infer.SerializeToString(),
    }


def _handler(answer: bytes) -> Any:
    async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return answer

    return grpc.unary_unary_rpc_method_handler(handle)


async def main(port: int, width: int) -> None:
    server = grpc.aio.server()
    table = {name: _handler(answer) for name, answer in _answers(width).items()}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, table)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8401)
    p.add_argument("--width", type=int, default=4, help="the canned answer's 1xWIDTH output")
    args = p.parse_args()
    uvloop.run(main(args.port, args.width))
