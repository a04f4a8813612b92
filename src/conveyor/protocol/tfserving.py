"""TensorFlow Serving's REST predict API, as a codec over the same data plane.

Request bodies (TF Serving's REST documentation):
- row format: `{"instances": [...]}`: one entry per batch row; each either the value of
  the model's only input, or an object `{input_name: value}`;
- columnar format: `{"inputs": value}` or `{"inputs": {input_name: value}}`, each value
  holding the whole batch.
Binary strings travel as `{"b64": "..."}`. Responses mirror the request's format:
`{"predictions": [...]}` (row; objects per row when the model has several outputs) or
`{"outputs": ...}` (columnar).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequestError
from conveyor.protocol.tensors import numeric_from_json
from conveyor.types import InferRequest

DT_NAMES = {
    "BOOL": "DT_BOOL",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "FP16": "DT_HALF",
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    datatype: str


def _unb64(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise InvalidRequestError('a binary value must be {"b64": "<base64 string>"}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            raise InvalidRequestError('invalid base64 in a {"b64": ...} value') from None
    if isinstance(value, list):
        return [_unb64(v) for v in value]
    if isinstance(value, str):
        return value.encode()
    return value


def _array(info: TensorInfo, value: Any) -> np.ndarray:
    if info.datatype == "BYTES":
        data = _unb64(value)
        arr = np.array(data, dtype=object)
        if arr.size and not all(isinstance(x, bytes) for x in arr.reshape(-1)):
            raise InvalidRequestError(f"input '{info.name}': expected strings or b64 values")
        return arr
    return numeric_from_json(info.name, info.datatype, value)


def decode_predict(
    doc: Any, model: str, version: str, inputs: list[TensorInfo]
) -> tuple[InferRequest, bool]:
    """The request and whether it used the row (`instances`) format."""
    if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
        raise InvalidRequestError(
            "the body must be a JSON object with either 'instances' (row format) or "
            "'inputs' (columnar format)"
        )
    names = [t.name for t in inputs]
    by_name = {t.name: t for t in inputs}
    arrays: dict[str, np.ndarray] = {}
    if "instances" in doc:
        rows = doc["instances"]
        if not isinstance(rows, list) or not rows:
            raise InvalidRequestError("'instances' must be a non-empty list")
        if all(isinstance(r, dict) and "b64" not in r for r in rows):
            keys = set(rows[0])
            if any(set(r) != keys for r in rows):
                raise InvalidRequestError("every instance must name the same inputs")
            columns = {k: [r[k] for r in rows] for k in keys}
        elif len(names) == 1:
            columns = {names[0]: rows}
        else:
            raise InvalidRequestError(
                f"model '{model}' has inputs {names}: each instance must be an object naming them"
            )
        row_format = True
    else:
        value = doc["inputs"]
        if isinstance(value, dict) and "b64" not in value:
            columns = value
        elif len(names) == 1:
            columns = {names[0]: value}
        else:
            raise InvalidRequestError(
                f"model '{model}' has inputs {names}: 'inputs' must be an object naming them"
            )
        row_format = False
    for name, value in columns.items():
        info = by_name.get(name)
        if info is None:
            raise InvalidRequestError(f"unknown input '{name}' for model '{model}' ({names})")
        arrays[name] = _array(info, value)
    return InferRequest(model=model, version=version, inputs=arrays), row_format


def _jsonable(arr: np.ndarray) -> Any:
    if arr.dtype.kind in "OSU":

        def one(x: Any) -> Any:
            if isinstance(x, bytes):
                try:
                    return x.decode()
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(x).decode()}
            return str(x)

        return np.vectorize(one, otypes=[object])(arr).tolist() if arr.size else []
    return arr.tolist()


def encode_predict(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _jsonable(next(iter(outputs.values())))}
        return {"outputs": {name: _jsonable(arr) for name, arr in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": _jsonable(next(iter(outputs.values())))}
    columns = {name: _jsonable(arr) for name, arr in outputs.items()}
    rows = len(next(iter(columns.values())))
    return {"predictions": [{name: col[i] for name, col in columns.items()} for i in range(rows)]}
