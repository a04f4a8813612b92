"""Warm-up: sample requests run on every instance of a version before it is ready, so the
first real requests do not pay for lazy initialisation (allocator growth, kernel choice).

Config, with Triton's field names:

    model_warmup:
      - name: zeros
        batch_size: 8
        count: 2
        inputs:                       # optional: every input, zero-filled, if left out
          INPUT0: {data_type: TYPE_FP32, dims: [16], random_data: true}
          INPUT1: {data_type: TYPE_FP32, dims: [16], input_data_file: "in1.raw"}

`zero_data` (the default), `random_data` (seeded, so runs repeat), or `input_data_file`,
raw little-endian bytes in the model's `warmup/` directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.datatypes import V2_TO_NUMPY, normalize_datatype
from conveyor.protocol.tensors import from_bytes
from conveyor.repository.config import ConfigError, ModelConfig
from conveyor.runtimes.base import Runtime


@dataclass(slots=True)
class WarmupInput:
    datatype: str | None
    dims: list[int] | None
    source: str = "zero"  # zero | random | file
    file: str = ""


@dataclass(slots=True)
class WarmupSample:
    name: str
    batch_size: int = 1
    count: int = 1
    inputs: dict[str, WarmupInput] = field(default_factory=dict)


def parse_warmup(raw: Any) -> list[WarmupSample]:
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    samples = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError("each model_warmup entry must be a mapping")
        inputs_raw = item.get("inputs") or {}
        if isinstance(inputs_raw, list) or set(inputs_raw) == {"key", "value"}:
            entries = inputs_raw if isinstance(inputs_raw, list) else [inputs_raw]
            inputs_raw = {e["key"]: e.get("value") or {} for e in entries}  # pbtxt map form
        inputs = {}
        for name, spec in inputs_raw.items():
            spec = spec or {}
            source = (
                "file"
                if spec.get("input_data_file")
                else "random"
                if spec.get("random_data")
                else "zero"
            )
            try:
                datatype = (
                    normalize_datatype(str(spec["data_type"])) if spec.get("data_type") else None
                )
            except ValueError as exc:
                raise ConfigError(f"model_warmup input '{name}': {exc}") from None
            dims = [int(d) for d in spec["dims"]] if spec.get("dims") is not None else None
            inputs[str(name)] = WarmupInput(
                datatype, dims, source, str(spec.get("input_data_file", ""))
            )
        samples.append(
            WarmupSample(
                name=str(item.get("name") or f"warmup_{i}"),
                batch_size=int(item.get("batch_size", 1)),
                count=max(1, int(item.get("count", 1))),
                inputs=inputs,
            )
        )
    return samples


def build_inputs(
    sample: WarmupSample, config: ModelConfig, model_dir: Path
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    batch = config.max_batch_size > 0
    out = {}
    for tc in config.inputs:
        spec = sample.inputs.get(tc.name, WarmupInput(None, None))
        datatype = spec.datatype or tc.datatype
        dims = spec.dims if spec.dims is not None else [max(d, 1) for d in tc.dims]
        shape = tuple([sample.batch_size, *dims] if batch else dims)
        if spec.source == "file":
            path = model_dir / "warmup" / spec.file
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"warm-up '{sample.name}': cannot read {path}: {exc}") from None
            arr = from_bytes(tc.name, datatype, shape, data)
        elif datatype == "BYTES":
            arr = np.empty(shape, dtype=object)
            arr.reshape(-1)[:] = [b"" if spec.source == "zero" else b"warm-up"] * arr.size
        elif spec.source == "random":
            arr = rng.random(shape).astype(V2_TO_NUMPY[datatype])
        else:
            arr = np.zeros(shape, dtype=V2_TO_NUMPY[datatype])
        if tc.reshape is not None:
            arr = arr.reshape((sample.batch_size, *tc.reshape) if batch else tuple(tc.reshape))
        out[tc.name] = arr
    unknown = set(sample.inputs) - {t.name for t in config.inputs}
    if unknown:
        raise ConfigError(f"warm-up '{sample.name}' names unknown inputs {sorted(unknown)}")
    return out


def warm_up(
    runtime: Runtime, samples: list[WarmupSample], config: ModelConfig, model_dir: Path
) -> None:
    outputs = [t.name for t in config.outputs]
    for sample in samples:
        if config.max_batch_size > 0 and not 0 < sample.batch_size <= config.max_batch_size:
            raise ConfigError(
                f"warm-up '{sample.name}': batch_size {sample.batch_size} is outside "
                f"1..{config.max_batch_size}"
            )
        inputs = build_inputs(sample, config, model_dir)
        for _ in range(sample.count):
            try:
                runtime.infer(inputs, outputs)
            except Exception as exc:
                raise ConfigError(f"warm-up '{sample.name}' failed: {exc}") from None
