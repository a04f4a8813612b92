"""Tensors as raw bytes, shared by every protocol: Triton's binary extension over REST,
`raw_input_contents`/`raw_output_contents` over gRPC, and shared-memory regions.

Fixed-size types are their little-endian element bytes (numpy views, no copies);
BYTES elements are each a 4-byte little-endian length followed by the bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from conveyor.datatypes import V2_TO_NUMPY
from conveyor.errors import InvalidRequestError
from conveyor.runtimes.python.stub.wire import serialize_bytes
from conveyor.types import Chunk


def count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def from_bytes(
    name: str, datatype: str, shape: tuple[int, ...], buf: memoryview | bytes
) -> np.ndarray:
    n = count(shape)
    if datatype != "BYTES":
        dtype = V2_TO_NUMPY[datatype]
        if len(buf) != n * dtype.itemsize:
            raise InvalidRequestError(
                f"input '{name}': binary_data_size is {len(buf)} bytes, but shape {list(shape)} "
                f"of {datatype} needs {n * dtype.itemsize}"
            )
        return np.frombuffer(buf, dtype=dtype).reshape(shape)
    items: list[bytes] = []
    pos, end = 0, len(buf)
    while pos < end:
        if pos + 4 > end:
            raise InvalidRequestError(f"input '{name}': truncated BYTES element length")
        (length,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + length > end:
            raise InvalidRequestError(f"input '{name}': BYTES element overruns its data")
        items.append(bytes(buf[pos : pos + length]))
        pos += length
    if len(items) != n:
        raise InvalidRequestError(
            f"input '{name}': shape {list(shape)} needs {n} BYTES elements, data has {len(items)}"
        )
    arr = np.empty(n, dtype=object)
    arr[:] = items
    return arr.reshape(shape)


def to_bytes(arr: np.ndarray) -> Chunk:
    """The raw bytes of a tensor (a view for fixed-size types)."""
    if arr.dtype.kind in "OSU":
        return serialize_bytes(arr)  # one implementation, shared with Python workers
    if not arr.size:  # a view with a 0 in its shape cannot be cast
        return memoryview(b"")
    return np.ascontiguousarray(arr).data.cast("B")


_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}  # JSON value kinds each dtype accepts


def numeric_from_json(name: str, datatype: str, data: Any) -> np.ndarray:
    """Parsed JSON numbers (nested lists) as `datatype`, refusing values of another kind
    (strings for FP32, fractions for INT32, ...) instead of coercing them."""
    dtype = V2_TO_NUMPY[datatype]
    try:
        raw = np.array(data)
    except ValueError:
        raise InvalidRequestError(f"input '{name}': data is ragged or malformed") from None
    if raw.size and raw.dtype.kind not in _KINDS[dtype.kind]:
        got = "strings" if raw.dtype.kind in "US" else f"{raw.dtype.kind!r}-kind values"
        raise InvalidRequestError(
            f"input '{name}': expected {datatype} values; {datatype} cannot hold {got} "
            f"(first value {raw.reshape(-1)[0]!r})"
        )
    if dtype.kind in "iu" and raw.size and raw.dtype != dtype:
        # an integer out of the datatype's range is refused, not wrapped around
        info = np.iinfo(dtype)  # type: ignore[type-var]  # integer kinds only, checked above
        low, high = raw.min(), raw.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidRequestError(
                f"input '{name}': value {bad} is out of range for {datatype} "
                f"({info.min}..{info.max})"
            )
    return raw.astype(dtype, copy=False)
