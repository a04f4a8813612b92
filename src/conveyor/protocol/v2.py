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


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if type(raw) is list:
        for d in raw:
            if type(d) is not int or d < 0:
                break
        else:
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
    if not isinstance(data, list):
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
    if arr.size != count(shape):
        raise InvalidRequestError(
            f"input '{name}': shape {list(shape)} needs {count(shape)} elements, "
            f"data has {arr.size}"
        )
    return arr.reshape(shape)


def decode_request(
    body: bytes,
    header_length: int | None,
    model: str,
    version: str,
    limits: Limits | None = None,
) -> InferRequest:
    """Turn a V2 REST infer body into an InferRequest (named numpy arrays)."""
    total = len(body)
    if header_length is None:
        header_length = total
    elif not 0 <= header_length <= total:
        raise InvalidRequestError(
            f"Inference-Header-Content-Length is {header_length} but the body has {total} bytes"
        )
    view = memoryview(body)
    try:
        header = orjson.loads(view[:header_length])
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"malformed JSON in request body: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidRequestError("request body must be a JSON object")
    if limits is not None:
        limits.check_json_depth(header, raw=body[:header_length])  # all of it: no copy
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequestError("request needs a non-empty 'inputs' list")
    offset = header_length
    inputs: dict[str, np.ndarray] = {}
    shm_inputs: dict[str, tuple[ShmRef, str, tuple[int, ...]]] = {}
    for raw in raw_inputs:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidRequestError("each input needs a 'name'")
        name = raw["name"]
        if name in inputs or name in shm_inputs:
            raise InvalidRequestError(f"input '{name}' appears twice")
        datatype = raw.get("datatype")
        if datatype not in V2_TO_NUMPY:
            raise InvalidRequestError(f"input '{name}': unknown datatype {datatype!r}")
        shape = _shape(raw.get("shape"), name)
        params = raw.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidRequestError(f"input '{name}': 'parameters' must be an object")
        size = params.get("binary_data_size")
        if "shared_memory_region" in params:
            shm_inputs[name] = (ShmRef.from_params(f"input '{name}'", params), datatype, shape)
        elif size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidRequestError(f"input '{name}': binary_data_size must be an int >= 0")
            if offset + size > total:
                raise InvalidRequestError(
                    f"input '{name}': binary_data_size {size} runs past the end of the body "
                    f"({total - offset} bytes of binary data left); body truncated?"
                )
            inputs[name] = from_bytes(name, datatype, shape, view[offset : offset + size])
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
    if not isinstance(req_params, dict):
        raise InvalidRequestError("'parameters' must be an object")
    outputs = None
    shm_outputs: dict[str, ShmRef] = {}
    if header.get("outputs") is not None:
        outputs = []
        for raw in header["outputs"]:
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise InvalidRequestError("each requested output needs a 'name'")
            p = raw.get("parameters") or {}
            if "classification" in p:
                raise InvalidRequestError("the classification extension is not supported")
            if "shared_memory_region" in p:
                shm_outputs[raw["name"]] = ShmRef.from_params(f"output '{raw['name']}'", p)
            binary = p.get("binary_data")
            outputs.append(RequestedOutput(raw["name"], None if binary is None else bool(binary)))
    rid = header.get("id")
    return InferRequest(
        model=model,
        version=version,
        inputs=inputs,
        id=str(rid) if rid is not None else None,
        outputs=outputs,
        parameters=req_params,
        binary_output=bool(req_params.get("binary_data_output", False)),
        shm_inputs=shm_inputs,
        shm_outputs=shm_outputs,
    )


def _json_data(arr: np.ndarray) -> Any:
    if arr.dtype.kind in "OSU":
        return [
            x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)
        ]
    return np.ascontiguousarray(arr).reshape(-1)


def encode_response(
    response: InferResponse, request: InferRequest
) -> tuple[list[Chunk], int | None]:
    """Encode as V2 REST: (body buffers, header length if any output is binary, else None)."""
    wanted: dict[str, bool | None] = (
        {o.name: o.binary for o in request.outputs}
        if request.outputs is not None
        else dict.fromkeys(response.outputs)
    )
    outs = []
    blobs: list[Chunk] = []
    for name, binary in wanted.items():
        arr = response.outputs[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": v2_datatype(arr.dtype),
            "shape": list(arr.shape),
        }
        if name in response.in_shm:
            # Written to shared memory: neither data nor parameters, as Triton answers
            # (Triton's C++ client reads `binary_data_size` from any `parameters`).
            pass
        elif binary if binary is not None else request.binary_output:
            blob = to_bytes(arr)
            entry["parameters"] = {"binary_data_size": len(memoryview(blob))}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(arr)
        outs.append(entry)
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
