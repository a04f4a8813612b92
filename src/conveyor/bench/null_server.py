"""A null V2 HTTP target for measuring load generators (`conveyor bench --selftest`,
benchmarks/bench_tool.py): answers every request at once through our HTTP layer, no
model. It plays a V2 model `null` (input `x`, FP32 [-1,4]; metadata, config, and a
canned answer to every infer) so that V2 generators such as perf_analyzer can be
measured against it too; any other request gets 200 and `{}`.

    python -m conveyor.bench.null_server [--port 0]     # prints "listening PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import json

from conveyor.http.server import HttpRequest, HttpResponse, HttpServer

OK = HttpResponse(200, [b"{}"])
TENSOR = {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
ROUTES = {
    ("GET", "/v2/models/null"): json.dumps(
        {
            "name": "null",
            "versions": ["1"],
            "platform": "null",
            "inputs": [TENSOR],
            "outputs": [{**TENSOR, "name": "y"}],
        }
    ),
    ("GET", "/v2/models/null/config"): json.dumps(
        {
            "name": "null",
            "platform": "null",
            "max_batch_size": 8,
            "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}],
            "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [4]}],
        }
    ),
    ("POST", "/v2/models/null/infer"): json.dumps(
        {
            "model_name": "null",
            "model_version": "1",
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}],
        }
    ),
}
ANSWERS = {k: HttpResponse(200, [v.encode()]) for k, v in ROUTES.items()}


async def app(request: HttpRequest) -> HttpResponse:
    return ANSWERS.get((request.method, request.path), OK)


async def serve(port: int) -> None:
    server = HttpServer(app, "127.0.0.1", port, 1 << 20)
    await server.start()
    print(f"listening {server.port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m conveyor.bench.null_server")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    port = p.parse_args().port
    try:
        import uvloop

        uvloop.run(serve(port))
    except ImportError:
        asyncio.run(serve(port))


if __name__ == "__main__":
    main()
