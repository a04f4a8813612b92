"""The peer a team writes by hand: FastAPI + uvicorn (uvloop, httptools) + orjson, one
ONNX Runtime session, the V2 infer route for one model, no validation framework per
request (the raw body, as in shared/DATA.md's "FastAPI (raw Request body)").

    python benchmarks/peers/lean_fastapi.py MODEL.onnx --port 8100
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response


def build(model_path: str) -> FastAPI:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return Response(status_code=200)

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str, request: Request) -> Response:
        doc = orjson.loads(await request.body())
        inp = doc["inputs"][0]
        x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
        (y,) = session.run(None, {input_name: x})
        out = {
            "model_name": model,
            "outputs": [
                {"name": "y", "datatype": "FP32", "shape": list(y.shape), "data": y.reshape(-1)}
            ],
        }
        return Response(
            orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
        )

    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--port", type=int, default=8100)
    args = p.parse_args()
    uvicorn.run(
        build(args.model),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
    )


if __name__ == "__main__":
    main()
