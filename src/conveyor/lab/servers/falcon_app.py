"""Seed 000's self-hosted server: Falcon + msgpack under gunicorn, ONNX Runtime inside.

POST /predict/{model}, request and answer one msgpack map (application/msgpack):
{"shape": [n, ...], "dtype": "float32", "data": <raw little-endian C-order bytes>}.
Environment: LAB_MODELS="name=path.onnx,...", LAB_THREADS (ORT intra-op threads).

    gunicorn --bind 127.0.0.1:PORT --workers N --worker-class gthread falcon_app:app
"""

import os

import falcon
import msgpack
import numpy as np
import onnxruntime as ort

opts = ort.SessionOptions()
opts.intra_op_num_threads = int(os.environ.get("LAB_THREADS", "1"))
opts.inter_op_num_threads = 1
SESSIONS = {}
for spec in os.environ.get("LAB_MODELS", "").split(","):
    if spec:
        name, path = spec.split("=", 1)
        SESSIONS[name] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
MSGPACK = "application/msgpack"


class Predict:
    def on_post(self, req, resp, model):
        sess = SESSIONS.get(model)
        if sess is None:
            raise falcon.HTTPNotFound(title=f"unknown model {model}")
        try:
            msg = msgpack.unpackb(req.bounded_stream.read(), raw=False)
            x = np.frombuffer(msg["data"], dtype=np.dtype(msg["dtype"]).newbyteorder("<"))
            x = x.reshape(msg["shape"])
        except Exception as exc:  # malformed body, bad dtype, shape and size disagree
            raise falcon.HTTPBadRequest(title="bad tensor", description=str(exc)) from None
        feed = {sess.get_inputs()[0].name: x.astype(np.float32, copy=False)}
        (y,) = sess.run(None, feed)
        resp.content_type = MSGPACK
        resp.data = msgpack.packb(
            {"shape": list(y.shape), "dtype": str(y.dtype), "data": y.astype("<f4").tobytes()}
        )


class Health:
    def on_get(self, req, resp):
        resp.media = {"ready": True, "pid": os.getpid()}


app = falcon.App()
app.add_route("/predict/{model}", Predict())
app.add_route("/health", Health())
