"""Each lab protocol's body decodes back to the tensor, and answers decode as sent."""

from __future__ import annotations

import io
import json

import msgpack
import numpy as np
import pytest

from conveyor.lab import wire

X = np.arange(12, dtype=np.float32).reshape(3, 4) / 7


def test_v2_binary_request_and_answer() -> None:
    req = wire.request("v2-binary", "m", "x", X)
    assert req.path == "/v2/models/m/infer"
    n = int(req.headers["inference-header-content-length"])
    header = json.loads(req.body[:n])
    assert header["inputs"][0]["shape"] == [3, 4]
    assert np.array_equal(np.frombuffer(req.body[n:], np.float32).reshape(3, 4), X)
    # an answer with its output in the binary section
    head = json.dumps(
        {
            "outputs": [
                {
                    "name": "y",
                    "datatype": "FP32",
                    "shape": [3, 4],
                    "parameters": {"binary_data_size": X.nbytes},
                }
            ]
        }
    ).encode()
    got = wire.decode(
        "v2-binary", {"inference-header-content-length": str(len(head))}, head + X.tobytes()
    )
    assert np.array_equal(got, X)


def test_v2_json_answer() -> None:
    body = json.dumps(
        {
            "outputs": [
                {"name": "y", "datatype": "FP32", "shape": [3, 4], "data": X.ravel().tolist()}
            ]
        }
    ).encode()
    assert np.allclose(wire.decode("v2-json", {}, body), X)
    req = wire.request("v2-json", "m", "x", X)
    assert json.loads(req.body)["inputs"][0]["data"] == X.ravel().tolist()


def test_tfserving_rows() -> None:
    req = wire.request("tfserving", "m", "x", X)
    assert req.path == "/v1/models/m:predict"
    assert np.allclose(np.asarray(json.loads(req.body)["instances"]), X)
    got = wire.decode("tfserving", {}, json.dumps({"predictions": X.tolist()}).encode())
    assert np.allclose(got, X)


def test_npy_and_msgpack() -> None:
    req = wire.request("torchserve-npy", "m", "x", X)
    assert req.path == "/predictions/m"
    assert np.array_equal(np.load(io.BytesIO(req.body)), X)
    assert np.array_equal(wire.decode("torchserve-npy", {}, req.body), X)
    req = wire.request("msgpack", "m", "x", X)
    doc = msgpack.unpackb(req.body)
    assert doc["shape"] == [3, 4] and doc["dtype"] == "float32"
    assert np.array_equal(wire.decode("msgpack", {}, req.body), X)


def test_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        wire.request("soap", "m", "x", X)
