"""A small closed-loop load generator for the fairness test, run as its own process:

    python -m tests.e2e.loadgen http|grpc HOST:PORT START SECONDS CONCURRENCY

Connects, waits for the wall-clock time START (so several generator processes measure
the same window, whatever their start-up times), sends `linear` requests (1x256 FP32,
binary/raw tensors) for SECONDS and prints one JSON line: {"count": completed requests,
"errors": n, "p99_ms": ..., "rate": ...}. Bounded in time; loopback only.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np

X = np.random.default_rng(0).random((1, 256), dtype=np.float32)


async def wait_until(start: float) -> None:
    await asyncio.sleep(max(0.0, start - time.time()))


async def http_worker(host: str, port: int, start: float, stop: float, lat: list[float]) -> int:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 256],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": X.nbytes},
                }
            ]
        }
    ).encode()
    body = header + X.tobytes()
    request = (
        f"POST /v2/models/linear/infer HTTP/1.1\r\nhost: {host}\r\n"
        f"content-length: {len(body)}\r\ninference-header-content-length: {len(header)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    await wait_until(start)
    while time.time() < stop:
        t = time.perf_counter()
        writer.write(request)
        status = await reader.readline()
        if not status:
            raise ConnectionError("the server closed the connection")
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        lat.append(time.perf_counter() - t)
        errors += b" 200 " not in status
    writer.close()
    return errors


async def grpc_worker(target: str, start: float, stop: float, lat: list[float]) -> int:
    import grpc

    from conveyor.grpc import inference_pb2 as pb
    from conveyor.grpc import inference_pb2_grpc as pb_grpc

    req = pb.ModelInferRequest(model_name="linear")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 256])
    req.raw_input_contents.append(X.tobytes())
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        await channel.channel_ready()
        await wait_until(start)
        while time.time() < stop:
            t = time.perf_counter()
            try:
                await stub.ModelInfer(req)
            except grpc.RpcError:
                errors += 1
            lat.append(time.perf_counter() - t)
    return errors


async def main(kind: str, target: str, start: float, seconds: float, concurrency: int) -> None:
    host, port = target.rsplit(":", 1)
    stop = start + seconds
    lat: list[float] = []
    if kind == "http":
        jobs = [http_worker(host, int(port), start, stop, lat) for _ in range(concurrency)]
    else:
        jobs = [grpc_worker(target, start, stop, lat) for _ in range(concurrency)]
    errors = sum(await asyncio.gather(*jobs))
    p99 = float(np.percentile(lat, 99) * 1e3) if lat else 0.0
    print(
        json.dumps({"count": len(lat), "errors": errors, "p99_ms": p99, "rate": len(lat) / seconds})
    )


if __name__ == "__main__":
    kind, target, start, seconds, concurrency = sys.argv[1:6]
    asyncio.run(main(kind, target, float(start), float(seconds), int(concurrency)))
