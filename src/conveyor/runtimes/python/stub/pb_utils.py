"""Triton's `triton_python_backend_utils`, as a python-backend `model.py` imports it.

Written from Triton's documented API (python_backend's README) so that a Triton model
serves unchanged: tensors, requests and responses, BLS (`InferenceRequest.exec` /
`async_exec`, decoupled too), decoupled response senders, errors, the logger, custom
metrics, the auto-complete config object, and the module's helper functions. The
worker installs this module as `sys.modules["triton_python_backend_utils"]` and sets
`host` (the link to the core) before importing the model.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Protocol

import numpy as np

from . import wire

# --- the link to the core (set by the worker) ----------------------------------------


class Host(Protocol):
    def bls(self, request: InferenceRequest, decoupled: bool, timeout: float | None) -> Any: ...
    def bls_async(self, request: InferenceRequest, decoupled: bool) -> Any: ...
    def send_response(self, tag: int, response: InferenceResponse | None, flags: int) -> None: ...
    def log(self, level: str, message: str) -> None: ...
    def metric(
        self, family: MetricFamily, labels: dict[str, str], op: str, value: float
    ) -> None: ...


host: Host | None = None

# --- constants ---------------------------------------------------------------------------

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_MEMORY_CPU = 0
TRITONSERVER_MEMORY_CPU_PINNED = 1
TRITONSERVER_MEMORY_GPU = 2

# Triton's model-config data type names and enum numbers (model_config.proto)
TRITON_STRING_TO_NUMPY: dict[str, Any] = {
    "TYPE_BOOL": bool,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}
_TYPE_NUMBERS = {
    "TYPE_BOOL": 1,
    "TYPE_UINT8": 2,
    "TYPE_UINT16": 3,
    "TYPE_UINT32": 4,
    "TYPE_UINT64": 5,
    "TYPE_INT8": 6,
    "TYPE_INT16": 7,
    "TYPE_INT32": 8,
    "TYPE_INT64": 9,
    "TYPE_FP16": 10,
    "TYPE_FP32": 11,
    "TYPE_FP64": 12,
    "TYPE_STRING": 13,
}


class PreferredMemory:
    def __init__(self, preferred_memory_type: int = 0, preferred_device_id: int = 0) -> None:
        self.preferred_memory_type = preferred_memory_type
        self.preferred_device_id = preferred_device_id


# --- errors ----------------------------------------------------------------------------


class TritonError:
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = 1) -> None:
        self._message = str(message)
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code

    def __repr__(self) -> str:
        return f"TritonError({self._message!r})"


class TritonModelException(Exception):
    pass


# --- tensors ---------------------------------------------------------------------------


class Tensor:
    def __init__(self, name: str, value: Any, *_: Any) -> None:
        arr = np.asarray(value)
        if arr.dtype.kind == "U":
            arr = arr.astype(object)
        self._name = name
        self._value = arr

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._value

    def shape(self) -> list[int]:
        return list(self._value.shape)

    def triton_dtype(self) -> int:
        return numpy_to_triton_type(self._value.dtype) or 0

    def is_cpu(self) -> bool:
        return True

    def to_dlpack(self) -> Any:
        return self._value.__dlpack__()

    @staticmethod
    def from_dlpack(name: str, capsule: Any) -> Tensor:
        return Tensor(name, np.from_dlpack(capsule))

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, {self._value.dtype}, {list(self._value.shape)})"


# --- requests and responses ------------------------------------------------------------


class InferenceResponse:
    def __init__(
        self,
        output_tensors: list[Tensor] | None = None,
        error: TritonError | None = None,
        parameters: dict[str, Any] | str | None = None,
    ) -> None:
        self._outputs = list(output_tensors or [])
        self._error = error
        if isinstance(parameters, str):
            parameters = json.loads(parameters) if parameters else {}
        self._parameters: dict[str, Any] = dict(parameters or {})

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        return json.dumps(self._parameters)


class InferenceResponseSender:
    """A decoupled model's way to answer a request: any number of responses, then FINAL."""

    def __init__(self, tag: int) -> None:
        self._tag = tag
        self._closed = False

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if self._closed:
            raise TritonModelException("the response sender already sent its final flag")
        if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self._closed = True
        assert host is not None
        host.send_response(self._tag, response, flags)

    def is_cancelled(self) -> bool:
        return False


class InferenceRequest:
    """An incoming request, or (built by the model) a BLS request to any model."""

    def __init__(  # Triton's argument order: its users pass some positionally
        self,
        request_id: str = "",
        correlation_id: int | str = 0,
        inputs: list[Tensor] | None = None,
        requested_output_names: list[str] | None = None,
        model_name: str | bytes = "",
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: Any = None,
        trace: Any = None,
        parameters: dict[str, Any] | str | None = None,
    ) -> None:
        # a name read from a BYTES input arrives as bytes (Triton's bls example does this)
        self.model_name = model_name.decode() if isinstance(model_name, bytes) else model_name
        self.model_version = model_version
        self._inputs = list(inputs or [])
        self._outputs = list(requested_output_names or [])
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._flags = flags
        self._timeout = timeout
        if isinstance(parameters, str):
            parameters = json.loads(parameters) if parameters else {}
        self._parameters: dict[str, Any] = dict(parameters or {})
        self._tag = -1  # set on incoming requests: which request a response answers
        self._sender: InferenceResponseSender | None = None

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._outputs

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def timeout(self) -> int:
        return self._timeout

    def parameters(self) -> str:
        return json.dumps(self._parameters)

    def get_response_sender(self) -> InferenceResponseSender:
        if self._sender is None:
            self._sender = InferenceResponseSender(self._tag)
        return self._sender

    def is_cancelled(self) -> bool:
        return False

    def set_release_flags(self, flags: int) -> None:
        pass

    def exec(self, decoupled: bool = False, timeout: float | None = None) -> Any:
        """BLS: run this request on a model of the server, through its data plane (batched
        with everyone's traffic). Decoupled: an iterator of responses, the last one empty."""
        assert host is not None
        return host.bls(self, decoupled, timeout)

    def async_exec(self, decoupled: bool = False) -> Any:
        """BLS from `async def execute`: an awaitable of the response (or iterator)."""
        assert host is not None
        return host.bls_async(self, decoupled)


# --- logging ---------------------------------------------------------------------------


class LogLevel:
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


_LEVEL_NAMES = {0: "info", 1: "warning", 2: "error", 3: "verbose"}


class Logger:
    @staticmethod
    def log(message: str, level: int = LogLevel.INFO) -> None:
        if host is not None:
            host.log(_LEVEL_NAMES.get(level, "info"), str(message))

    @staticmethod
    def log_info(message: str) -> None:
        Logger.log(message, LogLevel.INFO)

    @staticmethod
    def log_warn(message: str) -> None:
        Logger.log(message, LogLevel.WARNING)

    @staticmethod
    def log_error(message: str) -> None:
        Logger.log(message, LogLevel.ERROR)

    @staticmethod
    def log_verbose(message: str) -> None:
        Logger.log(message, LogLevel.VERBOSE)


# --- custom metrics ---------------------------------------------------------------------


class MetricFamily:
    """A custom metric family, shown on the server's /metrics (counters and gauges)."""

    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2

    def __init__(self, name: str, description: str, kind: int) -> None:
        if kind not in (self.COUNTER, self.GAUGE):
            raise TritonModelException(
                f"metric family '{name}': only COUNTER and GAUGE are supported"
            )
        self.name = name
        self.description = description
        self.kind = kind
        if host is not None:
            host.metric(self, {}, "family", 0.0)

    def Metric(self, labels: dict[str, str] | None = None, buckets: Any = None) -> Metric:
        return Metric(self, dict(labels or {}))


class Metric:
    def __init__(self, family: MetricFamily, labels: dict[str, str]) -> None:
        self._family = family
        self._labels = {str(k): str(v) for k, v in labels.items()}
        self._value = 0.0
        if host is not None:
            host.metric(family, self._labels, "create", 0.0)

    def increment(self, value: float) -> None:
        if self._family.kind == MetricFamily.COUNTER and value < 0:
            raise TritonModelException("a counter cannot be decremented")
        self._value += value
        if host is not None:
            host.metric(self._family, self._labels, "inc", float(value))

    def set(self, value: float) -> None:
        if self._family.kind == MetricFamily.COUNTER:
            raise TritonModelException("a counter cannot be set; use increment")
        self._value = float(value)
        if host is not None:
            host.metric(self._family, self._labels, "set", float(value))

    def value(self) -> float:
        """This worker's view: increments and sets made by this instance."""
        return self._value


# --- the auto-complete config object ----------------------------------------------------


class ModelConfig:
    """What `TritonPythonModel.auto_complete_config(auto_complete_model_config)` receives."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config

    def as_dict(self) -> dict[str, Any]:
        return self._config

    def set_max_batch_size(self, max_batch_size: int) -> None:
        current = int(self._config.get("max_batch_size", 0) or 0)
        if current and current != max_batch_size:
            raise ValueError(
                f"max_batch_size is already {current} in the config; cannot set {max_batch_size}"
            )
        self._config["max_batch_size"] = int(max_batch_size)

    def set_dynamic_batching(self) -> None:
        self._config.setdefault("dynamic_batching", {})

    def set_model_transaction_policy(self, policy: dict[str, Any]) -> None:
        self._config["model_transaction_policy"] = dict(policy)

    def add_input(self, tensor: dict[str, Any]) -> None:
        self._add("input", tensor)

    def add_output(self, tensor: dict[str, Any]) -> None:
        self._add("output", tensor)

    def _add(self, kind: str, tensor: dict[str, Any]) -> None:
        for key in ("name", "data_type", "dims"):
            if key not in tensor:
                raise ValueError(f"{kind} {tensor!r} needs '{key}'")
        tensors = self._config.setdefault(kind, [])
        for existing in tensors:
            if existing["name"] == tensor["name"]:
                for key in ("data_type", "dims"):
                    if key in existing and list(_as_seq(existing[key])) != list(
                        _as_seq(tensor[key])
                    ):
                        raise ValueError(
                            f"{kind} '{tensor['name']}' already has {key} {existing[key]} "
                            f"in the config, not {tensor[key]}"
                        )
                return
        tensors.append(dict(tensor))


def _as_seq(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- helper functions (the module-level API of triton_python_backend_utils) -------------


def get_input_tensor_by_name(inference_request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in inference_request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(inference_response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in inference_response.output_tensors() if t.name() == name), None)


def get_input_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in model_config.get("input", []) if t["name"] == name), None)


def get_output_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in model_config.get("output", []) if t["name"] == name), None)


def using_decoupled_model_transaction_policy(model_config: dict[str, Any]) -> bool:
    return bool((model_config.get("model_transaction_policy") or {}).get("decoupled", False))


def triton_string_to_numpy(triton_type_string: str) -> Any:
    return TRITON_STRING_TO_NUMPY[triton_type_string]


def triton_to_numpy_type(data_type: int) -> Any:
    for name, number in _TYPE_NUMBERS.items():
        if number == data_type:
            return TRITON_STRING_TO_NUMPY[name]
    return None


def numpy_to_triton_type(data_type: Any) -> int | None:
    dtype = np.dtype(data_type)
    if dtype.kind in "OSU":
        return _TYPE_NUMBERS["TYPE_STRING"]
    for name, np_type in TRITON_STRING_TO_NUMPY.items():
        if name != "TYPE_STRING" and np.dtype(np_type) == dtype:
            return _TYPE_NUMBERS[name]
    return None


def serialize_byte_tensor(input_tensor: np.ndarray) -> np.ndarray | None:
    """Triton's layout: each element a 4-byte little-endian length, then its bytes."""
    if input_tensor.size == 0:
        return None
    if input_tensor.dtype.kind not in "OS":
        raise TritonModelException("cannot serialize bytes tensor: invalid datatype")
    flat = [
        x if isinstance(x, bytes) else str(x).encode()
        for x in np.asarray(input_tensor).reshape(-1, order="C")
    ]
    data = b"".join(struct.pack("<I", len(b)) + b for b in flat)
    return np.array([data], dtype=np.bytes_)


def deserialize_bytes_tensor(encoded_tensor: bytes) -> np.ndarray:
    return wire.deserialize_bytes(memoryview(encoded_tensor), (-1,))


def get_model_dir() -> str:
    """The model's version directory (where model.py is)."""
    return model_dir


model_dir = ""  # set by the worker
