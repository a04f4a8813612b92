"""Complete a config from the model file, and reject a config that contradicts it.

What the model declares (its inputs, outputs, dtypes, dims) fills whatever the config
leaves out, as Triton's auto-complete does: a dynamic first dimension on every tensor
means the model can batch, so a config without `max_batch_size` gets the default and
dynamic batching. What the config does say must agree with the model.
"""

from __future__ import annotations

from conveyor.repository.config import (
    ConfigError,
    DynamicBatching,
    ModelConfig,
    TensorConfig,
)
from conveyor.runtimes.base import TensorSpec

DEFAULT_MAX_BATCH_SIZE = 8


def _batchable(specs: list[TensorSpec]) -> bool:
    return bool(specs) and all(len(s.shape) >= 1 and s.shape[0] == -1 for s in specs)


def _check(kind: str, tc: TensorConfig, spec: TensorSpec, batch: bool) -> None:
    if tc.datatype != spec.datatype:
        raise ConfigError(
            f"{kind} '{tc.name}': config says {tc.datatype}, the model has {spec.datatype}"
        )
    seen = list(tc.reshape if tc.reshape is not None else tc.dims)
    full = [-1, *seen] if batch else seen
    model = list(spec.shape)
    if len(full) != len(model):
        raise ConfigError(
            f"{kind} '{tc.name}': config dims {full} have rank {len(full)}, "
            f"the model's shape {model} has rank {len(model)}"
        )
    for c, m in zip(full, model, strict=True):
        if m != -1 and c != m:
            raise ConfigError(
                f"{kind} '{tc.name}': config dims {full} do not match the model's shape {model}"
            )


def complete(
    config: ModelConfig,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> ModelConfig:
    batchable = _batchable(inputs) and _batchable(outputs)
    if config.max_batch_size == -1:
        config.max_batch_size = default_max_batch_size if batchable else 0
        if batchable and config.dynamic_batching is None and not config.inputs:
            config.dynamic_batching = DynamicBatching()
    batch = config.max_batch_size > 0
    if batch and not batchable:
        raise ConfigError(
            f"max_batch_size is {config.max_batch_size} but the model's tensors do not all "
            "have a variable first dimension; set max_batch_size: 0"
        )
    if config.dynamic_batching is not None:
        if not batch:
            raise ConfigError("dynamic_batching needs max_batch_size > 0")
        too_big = [
            s for s in config.dynamic_batching.preferred_batch_size if s > config.max_batch_size
        ]
        if too_big:
            raise ConfigError(f"preferred_batch_size {too_big} exceeds max_batch_size")

    for kind, declared, specs in (
        ("input", config.inputs, inputs),
        ("output", config.outputs, outputs),
    ):
        by_name = {s.name: s for s in specs}
        if not declared:
            declared.extend(
                TensorConfig(s.name, s.datatype, list(s.shape[1:] if batch else s.shape))
                for s in specs
            )
            continue
        for tc in declared:
            spec = by_name.get(tc.name)
            if spec is None:
                raise ConfigError(
                    f"{kind} '{tc.name}' is not in the model (it has {', '.join(by_name)})"
                )
            _check(kind, tc, spec, batch)
    missing = {s.name for s in inputs} - {t.name for t in config.inputs}
    if missing:
        raise ConfigError(f"the model needs inputs {sorted(missing)} that the config leaves out")
    return config
