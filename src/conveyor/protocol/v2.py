"""KServe V2 (Open Inference Protocol) REST codec, with Triton's binary-tensor extension.

A request body is a JSON header, optionally followed by the raw bytes of the inputs
that carry `parameters.binary_data_size`; the `Inference-Header-Content-Length`
HTTP header says where the JSON ends. Binary inputs become numpy views over the
body (no copy). Responses mirror it: outputs asked for with `binary_data: true`
(or all of them with the request-level `binary_data_output: true`) are appended
raw after the JSON header.

BYTES elements travel as strings in JSON, and in binary as a 4-byte little-endian
length followed by the bytes, element after element.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from conveyor.datatypes import V2_TO_NUMPY, v2_datatype
from conveyor.errors import InvalidRequestError
from conveyor.limits import Limits
from conveyor.protocol.tensors import count, from_bytes, numeric_from_json, to_bytes
from conveyor.sharedmem import ShmRef
from conveyor.types import Chunk, InferRequest, InferResponse, RequestedOutput

_INT = {int}


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    # type(d) is int for every d (not bool, not float), and none negative: in C
    if type(raw) is list and (not raw or (set(map(type, raw)) == _INT and min(raw) >= 0)):
        return tuple(raw)
    raise InvalidRequestError(f"input '{name}': shape must be a list of non-negative ints")


def _flatten_strings(data: Any, out: list[bytes]) -> None:
    for x in data:
        if isinstance(x, list):
            _flatten_strings(x, out)
        elif isinstance(x, str):
            out.append(x.encode())
        elif isinstance(x, bytes):
            out.append(x)
        else:
            raise TypeError(type(x).__name__)


def _json_array(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    if type(data) is not list:
        data = [data]
    if datatype == "BYTES":
        flat: list[bytes] = []
        try:
            _flatten_strings(data, flat)
        except TypeError as exc:
            raise InvalidRequestError(
                f"input '{name}': BYTES data must be strings, got {exc}"
            ) from None
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
    else:
        arr = numeric_from_json(name, datatype, data)
    try:
        return arr.reshape(shape)
    except ValueError:
        raise InvalidRequestError(
            f"input '{name}': shape {list(shape)} needs {count(shape)} elements, "
            f"data has {arr.size}"
        ) from None


def _binary_size(name: str, size: Any, offset: int, total: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidRequestError(f"input '{name}': binary_data_size must be an int >= 0")
    if offset + size > total:
        raise InvalidRequestError(
            f"input '{name}': binary_data_size {size} runs past the end of the body "
            f"({total - offset} bytes of binary data left); body truncated?"
        )
    return int(size)


def _requested_outputs(raw_outputs: Any, shm_outputs: dict[str, ShmRef]) -> list[RequestedOutput]:
    if type(raw_outputs) is not list:
        raise InvalidRequestError("'outputs' must be a list of objects with a 'name'")
    outputs = []
    for raw in raw_outputs:
        if type(raw) is not dict or type(raw.get("name")) is not str:
            raise InvalidRequestError("each requested output needs a 'name'")
        name = raw["name"]
        p = raw.get("parameters") or {}
        if type(p) is not dict:
            raise InvalidRequestError(f"output '{name}': 'parameters' must be an object")
        if "classification" in p:
            raise InvalidRequestError("the classification extension is not supported")
        if "shared_memory_region" in p:
            shm_outputs[name] = ShmRef.from_params(f"output '{name}'", p)
        binary = p.get("binary_data")
        outputs.append(RequestedOutput(name, None if binary is None else bool(binary)))
    return outputs


def decode_request(
    body: bytes,
    header_length: int | None,
    model: str,
    version: str,
    limits: Limits | None = None,
) -> InferRequest:
    """Turn a V2 REST infer body into an InferRequest (named numpy arrays). Every shape
    of bad input is an InvalidRequestError that names it."""
    total = len(body)
    if header_length is None or header_length == total:  # all JSON: the common case
        header_length = total
        text: bytes | memoryview = body
    elif not 0 <= header_length <= total:
        raise InvalidRequestError(
            f"Inference-Header-Content-Length is {header_length} but the body has {total} bytes"
        )
    else:
        text = memoryview(body)[:header_length]
    try:
        header = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"malformed JSON in request body: {exc}") from None
    if type(header) is not dict:
        raise InvalidRequestError("request body must be a JSON object")
    if limits is not None:
        limits.check_json_depth(header, raw=body if text is body else body[:header_length])
    raw_inputs = header.get("inputs")
    if type(raw_inputs) is not list or not raw_inputs:
        raise InvalidRequestError("request needs a non-empty 'inputs' list")
    offset = header_length
    inputs: dict[str, np.ndarray] = {}
    shm_inputs: dict[str, tuple[ShmRef, str, tuple[int, ...]]] = {}
    for raw in raw_inputs:
        if type(raw) is not dict or type(name := raw.get("name")) is not str:
            raise InvalidRequestError("each input needs a 'name'")
        if name in inputs or name in shm_inputs:
            raise InvalidRequestError(f"input '{name}' appears twice")
        datatype = raw.get("datatype")
        if type(datatype) is not str or datatype not in V2_TO_NUMPY:
            raise InvalidRequestError(f"input '{name}': unknown datatype {datatype!r}")
        shape = _shape(raw.get("shape"), name)
        params = raw.get("parameters")
        if not params:  # the common case: JSON data
            if "data" not in raw:
                raise InvalidRequestError(f"input '{name}' has neither 'data' nor binary_data_size")
            inputs[name] = _json_array(name, datatype, shape, raw["data"])
            continue
        if type(params) is not dict:
            raise InvalidRequestError(f"input '{name}': 'parameters' must be an object")
        size = params.get("binary_data_size")
        if "shared_memory_region" in params:
            shm_inputs[name] = (ShmRef.from_params(f"input '{name}'", params), datatype, shape)
        elif size is not None:
            size = _binary_size(name, size, offset, total)
            inputs[name] = from_bytes(
                name, datatype, shape, memoryview(body)[offset : offset + size]
            )
            offset += size
        elif "data" in raw:
            inputs[name] = _json_array(name, datatype, shape, raw["data"])
        else:
            raise InvalidRequestError(f"input '{name}' has neither 'data' nor binary_data_size")
    if offset != total:
        raise InvalidRequestError(
            f"the body has {total - header_length} bytes of binary data but the inputs' "
            f"binary_data_size add up to {offset - header_length}"
        )
    req_params = header.get("parameters") or {}
    if type(req_params) is not dict:
        raise InvalidRequestError("'parameters' must be an object")
    shm_outputs: dict[str, ShmRef] = {}
    raw_outputs = header.get("outputs")
    outputs = None if raw_outputs is None else _requested_outputs(raw_outputs, shm_outputs)
    rid = header.get("id")
    return InferRequest(
        model,
        inputs,
        version,
        str(rid) if rid is not None else None,
        outputs,
        req_params,
        bool(req_params.get("binary_data_output", False)) if req_params else False,
        shm_inputs,
        shm_outputs,
    )


def _json_data(arr: np.ndarray) -> Any:
    if arr.dtype.kind in "OSU":
        return [
            x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)
        ]
    return arr.ravel()  # C-contiguous (a copy only when it is not): what orjson serializes


def encode_response(
    response: InferResponse, request: InferRequest
) -> tuple[list[Chunk], int | None]:
    """Encode as V2 REST: (body buffers, header length if any output is binary, else None)."""
    results = response.outputs
    wanted: Any = (
        [(o.name, o.binary) for o in request.outputs]
        if request.outputs is not None
        else [(name, None) for name in results]
    )
    outs = []
    blobs: list[Chunk] = []
    in_shm = response.in_shm
    for name, binary in wanted:
        arr = results[name]
        dtype = arr.dtype
        datatype = _DATATYPES.get(dtype) or v2_datatype(dtype)
        if name in in_shm:
            # Written to shared memory: neither data nor parameters, as Triton answers
            # (Triton's C++ client reads `binary_data_size` from any `parameters`).
            outs.append({"name": name, "datatype": datatype, "shape": arr.shape})
        elif binary if binary is not None else request.binary_output:
            blob = to_bytes(arr)
            blobs.append(blob)
            outs.append(
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": arr.shape,
                    "parameters": {"binary_data_size": len(memoryview(blob))},
                }
            )
        else:
            outs.append(
                {"name": name, "datatype": datatype, "shape": arr.shape, "data": _json_data(arr)}
            )
    header: dict[str, Any] = {"model_name": response.model, "model_version": response.version}
    if response.id is not None:
        header["id"] = response.id
    if response.parameters:
        header["parameters"] = response.parameters
    header["outputs"] = outs
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return [head], None
    return [head, *blobs], len(head)


# numeric dtypes' V2 names, looked up by the dtype itself (BYTES kinds go through
# v2_datatype: 'S', 'U' and 'O' dtypes of any size)
_DATATYPES = {dtype: name for name, dtype in V2_TO_NUMPY.items() if name != "BYTES"}
