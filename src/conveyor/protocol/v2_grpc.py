"""KServe V2 gRPC codec: `ModelInferRequest` <-> InferRequest, InferResponse ->
`ModelInferResponse`.

Inputs come as `raw_input_contents` (one entry per input, in order; numpy views, no
copies) or as typed `contents`. Outputs always go back as `raw_output_contents`, as
Triton does, one entry per output so indices line up (an empty entry for an output
written to shared memory).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf.internal.containers import MessageMap

from conveyor.datatypes import V2_TO_NUMPY, v2_datatype
from conveyor.errors import InvalidRequestError
from conveyor.grpc import inference_pb2 as pb
from conveyor.protocol.tensors import count, from_bytes, to_bytes
from conveyor.sharedmem import ShmRef
from conveyor.types import InferRequest, InferResponse, RequestedOutput

# datatype -> the InferTensorContents field that carries it
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def params_to_dict(params: MessageMap[str, pb.InferParameter]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        choice = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, choice) if choice else None
    return out


def set_param(params: MessageMap[str, pb.InferParameter], key: str, value: Any) -> None:
    p = params[key]
    if isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, int):
        p.int64_param = value
    elif isinstance(value, float):
        p.double_param = value
    else:
        p.string_param = str(value)


def _typed(
    name: str, datatype: str, shape: tuple[int, ...], contents: pb.InferTensorContents
) -> np.ndarray:
    field = _CONTENTS.get(datatype)
    if field is None:
        raise InvalidRequestError(
            f"input '{name}': {datatype} has no typed contents field; send raw_input_contents"
        )
    values = getattr(contents, field)
    n = count(shape)
    if len(values) != n:
        raise InvalidRequestError(
            f"input '{name}': shape {list(shape)} needs {n} elements, {field} has {len(values)}"
        )
    if datatype == "BYTES":
        arr = np.empty(n, dtype=object)
        arr[:] = list(values)
        return arr.reshape(shape)
    try:
        return np.array(values, dtype=V2_TO_NUMPY[datatype]).reshape(shape)
    except OverflowError as exc:  # e.g. 1000 in int_contents for INT8: refused, not wrapped
        raise InvalidRequestError(f"input '{name}': {exc} ({datatype})") from None


def decode_request(msg: pb.ModelInferRequest) -> InferRequest:
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} inputs"
        )
    if not msg.inputs:
        raise InvalidRequestError("request has no inputs")
    inputs: dict[str, np.ndarray] = {}
    shm_inputs: dict[str, tuple[ShmRef, str, tuple[int, ...]]] = {}
    shm_outputs: dict[str, ShmRef] = {}
    for i, t in enumerate(msg.inputs):
        name, datatype = t.name, t.datatype
        if name in inputs or name in shm_inputs:
            raise InvalidRequestError(f"input '{name}' appears twice")
        if datatype not in V2_TO_NUMPY:
            raise InvalidRequestError(f"input '{name}': unknown datatype {datatype!r}")
        if any(d < 0 for d in t.shape):
            raise InvalidRequestError(f"input '{name}': shape {list(t.shape)} has a negative dim")
        shape = tuple(t.shape)
        params = params_to_dict(t.parameters) if t.parameters else {}
        if "shared_memory_region" in params:
            shm_inputs[name] = (ShmRef.from_params(f"input '{name}'", params), datatype, shape)
        elif raw:
            inputs[name] = from_bytes(name, datatype, shape, raw[i])
        elif t.HasField("contents"):
            inputs[name] = _typed(name, datatype, shape, t.contents)
        else:
            raise InvalidRequestError(f"input '{name}' has no data")
    outputs = None
    if msg.outputs:
        outputs = []
        for o in msg.outputs:
            outputs.append(RequestedOutput(o.name, binary=True))
            if o.parameters:
                params = params_to_dict(o.parameters)
                if "classification" in params:
                    raise InvalidRequestError("the classification extension is not supported")
                if "shared_memory_region" in params:
                    shm_outputs[o.name] = ShmRef.from_params(f"output '{o.name}'", params)
    request = InferRequest(
        model=msg.model_name,
        version=msg.model_version,
        inputs=inputs,
        id=msg.id or None,
        outputs=outputs,
        parameters=params_to_dict(msg.parameters) if msg.parameters else {},
        shm_inputs=shm_inputs,
        shm_outputs=shm_outputs,
    )
    return request


def encode_response(response: InferResponse) -> pb.ModelInferResponse:
    msg = pb.ModelInferResponse(
        model_name=response.model, model_version=response.version, id=response.id or ""
    )
    for name, arr in response.outputs.items():
        out = msg.outputs.add(name=name, datatype=v2_datatype(arr.dtype), shape=arr.shape)
        ref = response.in_shm.get(name)
        if ref is not None:
            set_param(out.parameters, "shared_memory_region", ref.region)
            set_param(out.parameters, "shared_memory_byte_size", ref.byte_size)
            msg.raw_output_contents.append(b"")
        else:
            msg.raw_output_contents.append(bytes(to_bytes(arr)))
    for key, value in response.parameters.items():
        set_param(msg.parameters, key, value)
    return msg
