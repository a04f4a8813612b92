"""A hand-made FastAPI service, as a team writes one: FastAPI + uvicorn (uvloop,
httptools) + orjson, one ONNX Runtime session per model, the KServe V2 JSON infer route,
the raw body parsed with orjson (no pydantic model per request). No batching.

    python fastapi_app.py --model NAME=PATH.onnx [...] --port P --threads T
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response


def build(models: dict[str, str], threads: int) -> FastAPI:
    sessions = {}
    for name, path in models.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sessions[name] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return Response(status_code=200)

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str, request: Request) -> Response:
        session = sessions.get(model)
        if session is None:
            return Response(orjson.dumps({"error": f"unknown model {model}"}), status_code=404)
        doc = orjson.loads(await request.body())
        inp = doc["inputs"][0]
        x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
        out = session.get_outputs()[0]
        (y,) = session.run(None, {session.get_inputs()[0].name: x})
        answer = {
            "model_name": model,
            "outputs": [
                {"name": out.name, "datatype": "FP32", "shape": list(y.shape), "data": y.ravel()}
            ],
        }
        return Response(
            orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY),
            media_type="application/json",
        )

    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", action="append", default=[], help="NAME=PATH.onnx")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    models = dict(m.split("=", 1) for m in args.model)
    uvicorn.run(
        build(models, args.threads),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
    )


if __name__ == "__main__":
    main()
