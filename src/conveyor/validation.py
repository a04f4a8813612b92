"""Request validation against a model version's config: names, dtypes, shapes, batch
rows and the batch key, derived once per version into a `Signature`."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor.datatypes import numpy_dtype, v2_datatype
from conveyor.errors import InvalidRequestError
from conveyor.repository.config import ModelConfig
from conveyor.repository.manager import ModelVersion


def _fmt(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


@dataclass(frozen=True, slots=True)
class _InputRule:
    name: str
    datatype: str
    dtype: np.dtype[Any]
    dims: tuple[int, ...]
    variable: bool  # some dim is -1
    reshape: tuple[int, ...] | None
    optional: bool


@dataclass(frozen=True, slots=True)
class Signature:
    """What a request must look like, derived once per model version from its config."""

    model: str
    batch: bool
    max_batch_size: int
    inputs: tuple[_InputRule, ...]
    names: frozenset[str]
    outputs: list[str]
    output_reshapes: dict[str, tuple[int, ...]]

    @classmethod
    def of(cls, config: ModelConfig) -> Signature:
        rules = tuple(
            _InputRule(
                t.name,
                t.datatype,
                numpy_dtype(t.datatype),
                tuple(t.dims),
                -1 in t.dims,
                None if t.reshape is None else tuple(t.reshape),
                t.optional,
            )
            for t in config.inputs
        )
        return cls(
            config.name,
            config.max_batch_size > 0,
            config.max_batch_size,
            rules,
            frozenset(t.name for t in config.inputs),
            [t.name for t in config.outputs],
            {t.name: tuple(t.dims) for t in config.outputs if t.reshape is not None},
        )


def signature(mv: ModelVersion) -> Signature:
    sig: Signature | None = mv.cache.get("signature")
    if sig is None:
        sig = mv.cache["signature"] = Signature.of(mv.config)
    return sig


def _bad_shape(rule: _InputRule, batch: bool, shape: tuple[int, ...]) -> InvalidRequestError:
    want = [-1, *rule.dims] if batch else list(rule.dims)
    return InvalidRequestError(
        f"input '{rule.name}': expected shape {_fmt(want)}, got {_fmt(shape)}"
    )


def validate_inputs(
    sig: Signature, inputs: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], int, Hashable]:
    """Check names, dtypes and shapes; returns what the model sees (reshaped where the
    config says so), the batch rows, and the batch key (the non-batch dims)."""
    batch = sig.batch
    rows = 0
    shaped: dict[str, np.ndarray] = {}
    key: list[tuple[int, ...]] = []
    for rule in sig.inputs:
        arr = inputs.get(rule.name)
        if arr is None:
            if rule.optional:
                continue
            raise InvalidRequestError(
                f"model '{sig.model}' expects input '{rule.name}', which the request lacks"
            )
        if arr.dtype != rule.dtype and not (rule.datatype == "BYTES" and arr.dtype.kind in "SU"):
            raise InvalidRequestError(
                f"input '{rule.name}': expected datatype {rule.datatype}, "
                f"got {v2_datatype(arr.dtype)}"
            )
        shape = arr.shape
        if batch:
            if not shape:
                raise _bad_shape(rule, batch, shape)
            dims = shape[1:]
            if rows == 0:
                rows = shape[0]
                if not 0 < rows <= sig.max_batch_size:
                    raise InvalidRequestError(
                        f"input '{rule.name}': batch size {rows} is outside "
                        f"1..{sig.max_batch_size} (max_batch_size of model '{sig.model}')"
                    )
            elif shape[0] != rows:
                raise InvalidRequestError(
                    f"input '{rule.name}' has batch size {shape[0]}, other inputs have {rows}"
                )
        else:
            dims = shape
        if dims != rule.dims and (
            not rule.variable
            or len(dims) != len(rule.dims)
            or any(d != c and c != -1 for d, c in zip(dims, rule.dims, strict=True))
        ):
            raise _bad_shape(rule, batch, shape)
        if rule.reshape is not None:
            target = (rows, *rule.reshape) if batch else rule.reshape
            try:
                arr = arr.reshape(target)
            except ValueError:
                raise InvalidRequestError(
                    f"input '{rule.name}': shape {_fmt(shape)} cannot be reshaped to {_fmt(target)}"
                ) from None
        if rule.datatype == "BYTES" and arr.dtype.kind != "O":
            arr = arr.astype(object)
        shaped[rule.name] = arr
        if rule.variable:
            key.append(arr.shape[1:])
    if len(shaped) != len(inputs):
        extra = sorted(set(inputs) - sig.names)
        raise InvalidRequestError(
            f"unknown input {', '.join(repr(e) for e in extra)} for model '{sig.model}' "
            f"(inputs: {', '.join(sorted(sig.names))})"
        )
    return shaped, max(rows, 1), tuple(key)


def reshape_outputs(sig: Signature, results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for name, dims in sig.output_reshapes.items():
        if name in results:
            arr = results[name]
            results[name] = arr.reshape((*arr.shape[:1], *dims) if sig.batch else dims)
    return results
