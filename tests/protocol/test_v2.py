"""The V2 REST codec: JSON (flat and nested) for every datatype, binary tensors both
ways, BYTES in both encodings, and the errors that name what is wrong."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from conveyor.datatypes import V2_TO_NUMPY
from conveyor.errors import InvalidRequestError
from conveyor.protocol.v2 import decode_request, encode_response
from conveyor.types import InferResponse
from tests.mutate import mutations


def body(*inputs: dict[str, object], **extra: object) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


NUMERIC = [t for t in V2_TO_NUMPY if t != "BYTES"]


@pytest.mark.parametrize("datatype", NUMERIC)
def test_every_numeric_datatype_in_json(datatype: str) -> None:
    data = [True, False, True, False] if datatype == "BOOL" else [1, 2, 3, 4]
    req = decode_request(
        body({"name": "x", "shape": [2, 2], "datatype": datatype, "data": data}), None, "m", ""
    )
    arr = req.inputs["x"]
    assert arr.dtype == V2_TO_NUMPY[datatype] and arr.shape == (2, 2)
    assert arr.ravel().tolist() == data


def test_nested_json_data() -> None:
    req = decode_request(
        body({"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]}),
        None,
        "m",
        "",
    )
    np.testing.assert_array_equal(req.inputs["x"], np.arange(1, 7, dtype=np.float32).reshape(2, 3))


def test_fp16_roundtrip_in_json() -> None:
    req = decode_request(
        body({"name": "x", "shape": [3], "datatype": "FP16", "data": [0.5, 1.5, -2.0]}),
        None,
        "m",
        "",
    )
    assert req.inputs["x"].dtype == np.float16
    chunks, hlen = encode_response(InferResponse("m", "1", {"y": req.inputs["x"]}), req)
    assert hlen is None
    out = orjson.loads(chunks[0])["outputs"][0]
    assert out == {"name": "y", "datatype": "FP16", "shape": [3], "data": [0.5, 1.5, -2.0]}


def test_bytes_in_json_and_binary() -> None:
    req = decode_request(
        body({"name": "s", "shape": [2], "datatype": "BYTES", "data": ["héllo", "w"]}),
        None,
        "m",
        "",
    )
    assert req.inputs["s"].tolist() == ["héllo".encode(), b"w"]
    payload = b"".join(struct.pack("<I", len(b)) + b for b in (b"ab", b"", b"xyz"))
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "s",
                    "shape": [3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(payload)},
                }
            ]
        }
    )
    req = decode_request(header + payload, len(header), "m", "")
    assert req.inputs["s"].tolist() == [b"ab", b"", b"xyz"]


def test_binary_input_is_a_view_over_the_body() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [3, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ]
        }
    )
    raw = header + x.tobytes()
    req = decode_request(raw, len(header), "m", "")
    np.testing.assert_array_equal(req.inputs["x"], x)
    assert not req.inputs["x"].flags.owndata  # no copy


def test_binary_and_json_outputs_mixed() -> None:
    req = decode_request(
        body(
            {"name": "x", "shape": [1], "datatype": "INT32", "data": [1]},
            outputs=[{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}],
            id="42",
        ),
        None,
        "m",
        "",
    )
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([b"x", b"yz"], dtype=object)
    chunks, hlen = encode_response(InferResponse("m", "1", {"a": a, "b": b}, "42"), req)
    raw = b"".join(bytes(c) for c in chunks)
    assert hlen is not None
    head = orjson.loads(raw[:hlen])
    assert head["id"] == "42" and head["model_version"] == "1"
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 24}
    assert head["outputs"][1]["data"] == ["x", "yz"]
    np.testing.assert_array_equal(np.frombuffer(raw[hlen:], np.float32).reshape(2, 3), a)


def test_request_level_binary_data_output() -> None:
    req = decode_request(
        body(
            {"name": "x", "shape": [1], "datatype": "INT32", "data": [1]},
            parameters={"binary_data_output": True},
        ),
        None,
        "m",
        "",
    )
    s = np.array([b"ab", b"c"], dtype=object)
    chunks, hlen = encode_response(InferResponse("m", "1", {"s": s}), req)
    raw = b"".join(bytes(c) for c in chunks)
    assert hlen is not None
    assert raw[hlen:] == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"


def _bin(size: int, shape: list[int], datatype: str = "FP32") -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": shape,
                    "datatype": datatype,
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )


@pytest.mark.parametrize(
    ("raw", "hlen", "message"),
    [
        (b"{not json", None, "malformed JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b'{"inputs": []}', None, "non-empty 'inputs'"),
        (
            body({"name": "x", "shape": [2], "datatype": "FP99", "data": [1, 2]}),
            None,
            "unknown datatype 'FP99'",
        ),
        (
            body({"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}),
            None,
            r"shape \[3\] needs 3 elements, data has 2",
        ),
        (
            body({"name": "x", "shape": [2], "datatype": "INT32", "data": [1.5, 2]}),
            None,
            "INT32 cannot hold",
        ),
        (
            body({"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 1000]}),
            None,
            r"value 1000 is out of range for INT8 \(-128..127\)",
        ),
        (
            body({"name": "x", "shape": [1], "datatype": "UINT32", "data": [-1]}),
            None,
            "value -1 is out of range for UINT32",
        ),
        (
            body({"name": "x", "shape": [2], "datatype": "FP32", "data": ["a", "b"]}),
            None,
            "cannot hold strings",
        ),
        (
            body({"name": "x", "shape": [2], "datatype": "BYTES", "data": [1, 2]}),
            None,
            "BYTES data must be strings",
        ),
        (
            body({"name": "x", "shape": [2], "datatype": "FP32", "data": [[1], [2, 3]]}),
            None,
            "ragged",
        ),
        (
            body({"name": "x", "shape": "2", "datatype": "FP32", "data": [1, 2]}),
            None,
            "shape must be a list",
        ),
        (body({"name": "x", "shape": [1], "datatype": "FP32"}), None, "neither 'data'"),
        (
            body(
                {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
            ),
            None,
            "appears twice",
        ),
        (_bin(8, [3]) + bytes(8), len(_bin(8, [3])), "binary_data_size is 8 bytes, but shape"),
        (_bin(12, [3]) + bytes(8), len(_bin(12, [3])), "runs past the end of the body"),
        (_bin(8, [2]) + bytes(12), len(_bin(8, [2])), "add up to 8"),
        (_bin(8, [2]), 10_000, "Inference-Header-Content-Length is 10000"),
        (
            _bin(6, [1], "BYTES") + struct.pack("<I", 9) + b"ab",
            len(_bin(6, [1], "BYTES")),
            "overruns",
        ),
        (
            body({"name": "x", "shape": [1], "datatype": ["FP32"], "data": [1]}),
            None,
            r"unknown datatype \['FP32'\]",
        ),
        (
            body({"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": [1]}),
            None,
            "input 'x': 'parameters' must be an object",
        ),
        (
            body({"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}, outputs=5),
            None,
            "'outputs' must be a list",
        ),
        (
            body(
                {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                outputs=[{"name": "y", "parameters": 5}],
            ),
            None,
            "output 'y': 'parameters' must be an object",
        ),
    ],
)
def test_bad_bodies_name_the_problem(raw: bytes, hlen: int | None, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        decode_request(raw, hlen, "m", "")


def test_any_malformed_body_is_a_400_never_a_crash() -> None:
    """Valid requests mutated at random (seeded): each one decodes or is an
    InvalidRequestError (a 400 that names it), never another exception (a 500)."""
    rng = np.random.default_rng(11)
    valid = {
        "id": "r1",
        "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
            {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["a"]},
            {"name": "b", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        "parameters": {"binary_data_output": False},
    }
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(3000):
        header = orjson.dumps(mutations(valid, rng))
        raw = header + np.arange(2, dtype=np.int32).tobytes()
        for hlen in (len(header), None):
            try:
                decode_request(raw, hlen, "m", "")
                outcomes["decoded"] += 1
            except InvalidRequestError:
                outcomes["refused"] += 1
    assert outcomes["decoded"] > 0 and outcomes["refused"] > 0
