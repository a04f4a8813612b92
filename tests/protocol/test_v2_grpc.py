"""The V2 gRPC codec: typed and raw contents, and the errors that name what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.errors import InvalidRequestError
from conveyor.grpc import inference_pb2 as pb
from conveyor.protocol.v2_grpc import decode_request


def request(datatype: str, field: str, values: list[object], shape: list[int]) -> object:
    msg = pb.ModelInferRequest(model_name="m")
    tensor = msg.inputs.add(name="x", datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return msg


def test_typed_contents_become_the_datatype() -> None:
    req = decode_request(request("INT16", "int_contents", [1, -2, 3, 4], [2, 2]))
    arr = req.inputs["x"]
    assert arr.dtype == np.int16 and arr.tolist() == [[1, -2], [3, 4]]


@pytest.mark.parametrize(
    ("datatype", "field", "value"),
    [
        ("INT8", "int_contents", 1000),
        ("UINT8", "uint_contents", 300),
        ("INT16", "int_contents", -70_000),
    ],
)
def test_a_value_out_of_the_datatypes_range_is_refused(
    datatype: str, field: str, value: int
) -> None:
    """It was an OverflowError from numpy (answered 500), and must not wrap either."""
    with pytest.raises(InvalidRequestError, match=f"input 'x': .*{value}.*{datatype}"):
        decode_request(request(datatype, field, [value], [1]))


def test_contents_that_do_not_fill_the_shape_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match=r"shape \[3\] needs 3 elements"):
        decode_request(request("FP32", "fp32_contents", [1.0, 2.0], [3]))


def test_raw_contents_must_match_the_inputs() -> None:
    msg = request("FP32", "fp32_contents", [1.0], [1])
    msg.raw_input_contents.extend([b"\0" * 4, b"\0" * 4])  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequestError, match="2 entries for 1 inputs"):
        decode_request(msg)
