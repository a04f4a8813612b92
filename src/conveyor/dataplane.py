"""The transport-neutral data plane: find the model version, validate, schedule, answer.

REST, gRPC and the in-process API all call this one object with decoded requests
(named numpy arrays) and encode what it returns.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from conveyor import __version__
from conveyor.datatypes import numpy_dtype, v2_datatype
from conveyor.errors import InvalidRequestError
from conveyor.repository.config import ModelConfig, to_triton_json
from conveyor.repository.manager import READY, ModelRepository, ModelVersion
from conveyor.types import InferRequest, InferResponse

EXTENSIONS = ["binary_tensor_data", "model_configuration", "schedule_policy", "parameters"]


def _fmt(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


class DataPlane:
    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository
        self.ready = False  # set by the server once models are loaded; cleared on drain

    # --- health and metadata ---------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "conveyor", "version": __version__, "extensions": EXTENSIONS}

    def model_ready(self, name: str, version: str = "") -> bool:
        self.repository.get(name, version)  # raises for unknown/unavailable
        return self.ready

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        mv = self.repository.get(name, version)
        c = mv.config
        batch = [-1] if c.max_batch_size > 0 else []
        entry = self.repository.models[name]
        return {
            "name": name,
            "versions": [str(v) for v in sorted(entry.versions)],
            "platform": c.platform,
            "inputs": [
                {"name": t.name, "datatype": t.datatype, "shape": [*batch, *t.dims]}
                for t in c.inputs
            ],
            "outputs": [
                {"name": t.name, "datatype": t.datatype, "shape": [*batch, *t.dims]}
                for t in c.outputs
            ],
        }

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        return to_triton_json(self.repository.get(name, version).config)

    def repository_index(self) -> list[dict[str, Any]]:
        rows = []
        for name, entry in sorted(self.repository.models.items()):
            if entry.state == READY:
                rows += [
                    {"name": name, "version": str(v), "state": READY, "reason": ""}
                    for v in sorted(entry.versions)
                ]
            else:
                rows.append(
                    {"name": name, "version": "", "state": entry.state, "reason": entry.reason}
                )
        return rows

    # --- inference ---------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        mv = self.repository.get(request.model, request.version)
        inputs, rows, key = validate_inputs(mv.config, request.inputs)
        outputs = self._output_names(mv.config, request)
        params = request.parameters
        results = await mv.scheduler.submit(
            inputs,
            outputs,
            rows,
            key,
            priority=_int_param(params, "priority"),
            timeout_us=_int_param(params, "timeout") or None,
        )
        return InferResponse(
            request.model, str(mv.version), _reshape_outputs(mv, results), request.id
        )

    @staticmethod
    def _output_names(config: ModelConfig, request: InferRequest) -> list[str]:
        if request.outputs is None:
            return [t.name for t in config.outputs]
        names = []
        for out in request.outputs:
            if config.output(out.name) is None:
                raise InvalidRequestError(
                    f"unknown output '{out.name}' for model '{config.name}' "
                    f"(outputs: {', '.join(t.name for t in config.outputs)})"
                )
            names.append(out.name)
        return names


def _int_param(params: dict[str, Any], name: str) -> int:
    value = params.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(
            f"parameter '{name}' must be a non-negative integer, got {value!r}"
        )
    return value


def validate_inputs(
    config: ModelConfig, inputs: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], int, Hashable]:
    """Check names, dtypes and shapes against the config; returns what the model sees
    (reshaped where the config says so), the batch rows, and the batch key."""
    batch = config.max_batch_size > 0
    rows = 1
    seen = 0
    shaped: dict[str, np.ndarray] = {}
    key: list[Any] = []
    for tc in config.inputs:
        arr = inputs.get(tc.name)
        if arr is None:
            if tc.optional:
                continue
            raise InvalidRequestError(
                f"model '{config.name}' expects input '{tc.name}', which the request lacks"
            )
        seen += 1
        want = numpy_dtype(tc.datatype)
        if arr.dtype != want and not (tc.datatype == "BYTES" and arr.dtype.kind in "OSU"):
            raise InvalidRequestError(
                f"input '{tc.name}': expected datatype {tc.datatype}, got {v2_datatype(arr.dtype)}"
            )
        shape = arr.shape
        dims = shape[1:] if batch else shape
        if (
            len(dims) != len(tc.dims)
            or any(d != c and c != -1 for d, c in zip(dims, tc.dims, strict=True))
            or (batch and not shape)
        ):
            want_shape = [-1, *tc.dims] if batch else tc.dims
            raise InvalidRequestError(
                f"input '{tc.name}': expected shape {_fmt(want_shape)}, got {_fmt(shape)}"
            )
        if batch:
            if seen == 1:
                rows = shape[0]
                if not 0 < rows <= config.max_batch_size:
                    raise InvalidRequestError(
                        f"input '{tc.name}': batch size {rows} is outside "
                        f"1..{config.max_batch_size} (max_batch_size of model '{config.name}')"
                    )
            elif shape[0] != rows:
                raise InvalidRequestError(
                    f"input '{tc.name}' has batch size {shape[0]}, other inputs have {rows}"
                )
        if tc.reshape is not None:
            target = (rows, *tc.reshape) if batch else tuple(tc.reshape)
            try:
                arr = arr.reshape(target)
            except ValueError:
                raise InvalidRequestError(
                    f"input '{tc.name}': shape {_fmt(shape)} cannot be reshaped to {_fmt(target)}"
                ) from None
        if tc.datatype == "BYTES" and arr.dtype.kind != "O":
            arr = arr.astype(object)
        shaped[tc.name] = arr
        key.append(arr.shape[1:])
    if seen != len(inputs):
        extra = sorted(set(inputs) - {t.name for t in config.inputs})
        raise InvalidRequestError(
            f"unknown input {', '.join(repr(e) for e in extra)} for model '{config.name}' "
            f"(inputs: {', '.join(t.name for t in config.inputs)})"
        )
    return shaped, rows, tuple(key)


def _reshape_outputs(mv: ModelVersion, results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    config = mv.config
    for name, arr in results.items():
        tc = config.output(name)
        if tc is not None and tc.reshape is not None:
            lead = arr.shape[:1] if config.max_batch_size > 0 else ()
            results[name] = arr.reshape((*lead, *tc.dims))
    return results
