"""Request bodies and answer decoding for each peer protocol the lab drives.

Each protocol gives a body (and headers) for an input batch, which the bench's HTTP
target sends unchanged, and a decoder of the answer, used once per peer to check that
it computes what the model computes. The same bytes are measured as checked.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor.bench.targets import tfserving_body, v2_body

PROTOCOLS = ("v2-binary", "v2-json", "tfserving", "torchserve-npy", "msgpack")


@dataclass
class Request:
    path: str
    body: bytes
    headers: dict[str, str]


def request(protocol: str, model: str, input_name: str, x: np.ndarray) -> Request:
    if protocol in ("v2-binary", "v2-json"):
        body, headers = v2_body({input_name: x}, binary=protocol == "v2-binary")
        return Request(f"/v2/models/{model}/infer", body, headers)
    if protocol == "tfserving":
        headers = {"content-type": "application/json"}
        return Request(f"/v1/models/{model}:predict", tfserving_body({input_name: x}), headers)
    if protocol == "torchserve-npy":
        buf = io.BytesIO()
        np.save(buf, x, allow_pickle=False)
        headers = {"content-type": "application/octet-stream"}
        return Request(f"/predictions/{model}", buf.getvalue(), headers)
    if protocol == "msgpack":
        import msgpack

        doc = {"shape": list(x.shape), "dtype": str(x.dtype), "data": x.tobytes()}
        headers = {"content-type": "application/msgpack"}
        return Request(f"/predict/{model}", msgpack.packb(doc), headers)
    raise ValueError(f"unknown protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")


def decode(protocol: str, headers: dict[str, str], body: bytes) -> np.ndarray:
    """The (first) output tensor of an answer."""
    if protocol in ("v2-binary", "v2-json"):
        return _v2_output(headers, body)
    if protocol == "tfserving":
        doc = json.loads(body)
        predictions = doc["predictions"] if "predictions" in doc else doc["outputs"]
        if isinstance(predictions, dict):
            predictions = next(iter(predictions.values()))
        return np.asarray(predictions, dtype=np.float32)
    if protocol == "torchserve-npy":
        return np.asarray(np.load(io.BytesIO(body), allow_pickle=False))
    if protocol == "msgpack":
        import msgpack

        doc = msgpack.unpackb(body)
        return np.frombuffer(doc["data"], dtype=doc["dtype"]).reshape(doc["shape"])
    raise ValueError(f"unknown protocol {protocol!r}")


_DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64}


def _v2_output(headers: dict[str, str], body: bytes) -> np.ndarray:
    size = headers.get("inference-header-content-length")
    header_len = int(size) if size is not None else len(body)
    doc: dict[str, Any] = json.loads(body[:header_len])
    out = doc["outputs"][0]
    dtype = _DTYPES.get(out["datatype"])
    if dtype is None:
        raise ValueError(f"output datatype {out['datatype']} is not numeric")
    binary = (out.get("parameters") or {}).get("binary_data_size")
    if binary is not None:
        raw = body[header_len : header_len + int(binary)]
        return np.frombuffer(raw, dtype=dtype).reshape(out["shape"])
    return np.asarray(out["data"], dtype=dtype).reshape(out["shape"])
