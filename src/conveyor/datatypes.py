"""KServe V2 datatypes and their numpy, Triton-config and ONNX Runtime names."""

from __future__ import annotations

import numpy as np

from conveyor.errors import InvalidRequestError

# V2 name -> numpy dtype. BYTES is an object array of `bytes`.
V2_TO_NUMPY: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
NUMPY_TO_V2: dict[np.dtype[np.generic], str] = {v: k for k, v in V2_TO_NUMPY.items()}
NUMPY_TO_V2[np.dtype(np.bytes_)] = "BYTES"

# Triton's model-config enum names (TYPE_STRING is Triton's name for BYTES).
V2_TO_TRITON: dict[str, str] = {k: f"TYPE_{k}" for k in V2_TO_NUMPY}
V2_TO_TRITON["BYTES"] = "TYPE_STRING"
TRITON_TO_V2: dict[str, str] = {v: k for k, v in V2_TO_TRITON.items()}

# ONNX Runtime's type strings (NodeArg.type).
ORT_TO_V2: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_ALIASES = {
    "STRING": "BYTES",
    "FLOAT": "FP32",
    "FLOAT32": "FP32",
    "FLOAT16": "FP16",
    "HALF": "FP16",
    "DOUBLE": "FP64",
    "FLOAT64": "FP64",
}


def normalize_datatype(name: str) -> str:
    """Accept `FP32`, `TYPE_FP32`, `float32`, `TYPE_STRING`... and return the V2 name."""
    upper = name.strip().upper()
    if upper.startswith("TYPE_"):
        upper = upper[5:]
    upper = _ALIASES.get(upper, upper)
    if upper not in V2_TO_NUMPY:
        raise ValueError(f"unknown datatype {name!r}")
    return upper


def numpy_dtype(datatype: str) -> np.dtype[np.generic]:
    try:
        return V2_TO_NUMPY[datatype]
    except KeyError:
        raise InvalidRequestError(f"unsupported datatype {datatype!r}") from None


def v2_datatype(dtype: np.dtype[np.generic]) -> str:
    if dtype.kind in ("S", "U", "O"):
        return "BYTES"
    try:
        return NUMPY_TO_V2[dtype]
    except KeyError:
        raise InvalidRequestError(f"numpy dtype {dtype} has no V2 datatype") from None


def element_size(datatype: str) -> int:
    """Bytes per element of a fixed-size datatype (BYTES has none: returns 0)."""
    return 0 if datatype == "BYTES" else V2_TO_NUMPY[datatype].itemsize
