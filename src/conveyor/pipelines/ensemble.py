"""Triton ensembles (`platform: "ensemble"`, `ensemble_scheduling { step [...] }`), and
Conveyor's native pipelines (`platform: pipeline`, `pipeline: {steps: [...]}`), which add
what an ensemble cannot say: a step may run only `when` a tensor has (or has not) a value,
so two steps may produce the same tensor as alternatives; and a step may be a plain Python
`function` of the pipeline's directory, run in a worker process of the pipeline's own
(no model to declare; its outputs are not type-checked at load).

An ensemble has no runtime of its own: the data plane runs it (`run`), handing each step
to that model's own scheduler through the data plane, so every step batches with the
other traffic of its model and the steps of different requests run at the same time.
A step starts as soon as every tensor it reads exists; intermediate tensors stay numpy
arrays, never re-encoded. A failed step fails the request with the step's name in the
error; a request that goes away cancels its running steps.

At load, `validate` checks the graph against the step models' configs: every input fed,
every output produced once, no cycle, datatypes and shapes that agree, and names the
step and tensor when something does not.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.batching.scheduler import Scheduler
from conveyor.errors import ConveyorError, InvalidRequestError, failure_reason
from conveyor.repository.config import ConfigError, EnsembleStep, ModelConfig, TensorConfig
from conveyor.runtimes.base import (
    Backend,
    LoadedRuntime,
    RequestContext,
    RequestRuntime,
    Runtime,
    config_specs,
)

Outputs = dict[str, np.ndarray]
# (model, version ("" = default), inputs, outputs wanted) -> the step's outputs
# ... and, when given, a dict the step's scheduler fills with its queue/compute times
StepCall = Callable[[str, str, Outputs, list[str], dict[str, float] | None], Awaitable[Outputs]]
FunctionCall = Callable[[int, Outputs, list[str], dict[str, float] | None], Awaitable[Outputs]]
Lookup = Callable[[str, str], ModelConfig]


def _label(i: int, step: EnsembleStep) -> str:
    return f"step {i} ('{step.model_name}')"


def _holds(step: EnsembleStep, tensors: Outputs) -> bool:
    """Whether the step's condition holds (its first element compared with the value)."""
    if step.when is None:
        return True
    name, op, value = step.when
    arr = tensors[name].reshape(-1)
    got = arr[0] if arr.size else None
    if isinstance(got, bytes) and isinstance(value, str):
        value = value.encode()
    equal = bool(got == value) if got is not None else False
    return equal if op == "equals" else not equal


def _version(step: EnsembleStep) -> str:
    return "" if step.model_version < 0 else str(step.model_version)


def _shape(t: TensorConfig, batched: bool) -> list[int]:
    return [-1, *t.dims] if batched else list(t.dims)


def _agree(a: list[int], b: list[int]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def order(config: ModelConfig) -> list[int]:
    """The steps in an order where each runs after what it reads (raises on a cycle, an
    unfed input, a tensor produced twice, or an output never produced)."""
    produced: dict[str, int] = {}
    for i, step in enumerate(config.ensemble_steps):
        for tensor in step.output_map.values():
            other = produced.get(tensor)
            if other is not None and step.when and config.ensemble_steps[other].when:
                continue  # alternatives: each runs on its own condition
            if tensor in produced:
                raise ConfigError(
                    f"ensemble tensor '{tensor}' is produced by both "
                    f"{_label(produced[tensor], config.ensemble_steps[produced[tensor]])} "
                    f"and {_label(i, step)}"
                )
            produced[tensor] = i
    inputs = {t.name for t in config.inputs}
    for i, step in enumerate(config.ensemble_steps):
        if step.when is not None and step.when[0] not in inputs and step.when[0] not in produced:
            raise ConfigError(f"{_label(i, step)}: 'when' reads unknown tensor '{step.when[0]}'")
        for model_input, tensor in step.input_map.items():
            if tensor not in inputs and tensor not in produced:
                raise ConfigError(
                    f"{_label(i, step)}: input '{model_input}' reads ensemble tensor "
                    f"'{tensor}', which is neither an ensemble input nor any step's output"
                )
    for out in config.outputs:
        if out.name not in produced:
            raise ConfigError(f"ensemble output '{out.name}' is produced by no step")
    done: list[int] = []
    available = set(inputs)
    remaining = list(range(len(config.ensemble_steps)))
    while remaining:
        ready = [
            i for i in remaining if all(t in available for t in _reads(config.ensemble_steps[i]))
        ]
        if not ready:
            names = ", ".join(_label(i, config.ensemble_steps[i]) for i in remaining)
            raise ConfigError(f"the ensemble's steps form a cycle: {names}")
        for i in ready:
            remaining.remove(i)
            done.append(i)
            available.update(config.ensemble_steps[i].output_map.values())
    return done


def _reads(step: EnsembleStep) -> list[str]:
    return [*step.input_map.values(), *([step.when[0]] if step.when else [])]


def validate(config: ModelConfig, lookup: Lookup) -> None:
    """Check the graph and every step against its model's config (loaded before)."""
    order(config)
    batched = config.max_batch_size > 0
    # every ensemble tensor: (datatype, full shape), from the ensemble inputs and the steps
    tensors: dict[str, tuple[str, list[int], str]] = {
        t.name: (t.datatype, _shape(t, batched), f"ensemble input '{t.name}'")
        for t in config.inputs
    }
    step_configs: list[ModelConfig | None] = []
    for i, step in enumerate(config.ensemble_steps):
        if step.function:  # untyped: what reads its outputs is not checked at load
            step_configs.append(None)
            for tensor in step.output_map.values():
                tensors[tensor] = ("", [], _label(i, step))
            continue
        try:
            model = lookup(step.model_name, _version(step))
        except ConveyorError as exc:
            raise ConfigError(f"{_label(i, step)}: {exc.message}") from None
        step_configs.append(model)  # an ensemble may be a step: validated when it loaded
        step_batched = model.max_batch_size > 0
        for model_output, tensor in step.output_map.items():
            out = model.output(model_output)
            if out is None:
                raise ConfigError(
                    f"{_label(i, step)}: the model has no output '{model_output}' "
                    f"(outputs: {', '.join(t.name for t in model.outputs)})"
                )
            tensors[tensor] = (out.datatype, _shape(out, step_batched), _label(i, step))
    for i, (step, step_model) in enumerate(zip(config.ensemble_steps, step_configs, strict=True)):
        if step_model is None:
            continue
        model = step_model
        step_batched = model.max_batch_size > 0
        if step_batched != batched and batched:
            raise ConfigError(
                f"{_label(i, step)}: the ensemble batches (max_batch_size "
                f"{config.max_batch_size}) but the model does not"
            )
        for model_input, tensor in step.input_map.items():
            inp = model.input(model_input)
            if inp is None:
                raise ConfigError(
                    f"{_label(i, step)}: the model has no input '{model_input}' "
                    f"(inputs: {', '.join(t.name for t in model.inputs)})"
                )
            datatype, shape, source = tensors[tensor]
            if not datatype:
                continue  # made by a function step: checked when it runs
            if datatype != inp.datatype:
                raise ConfigError(
                    f"{_label(i, step)}: input '{model_input}' is {inp.datatype}, but ensemble "
                    f"tensor '{tensor}' ({source}) is {datatype}"
                )
            if not _agree(shape, _shape(inp, step_batched)):
                raise ConfigError(
                    f"{_label(i, step)}: input '{model_input}' has shape "
                    f"{_shape(inp, step_batched)}, but ensemble tensor '{tensor}' ({source}) "
                    f"has {shape}"
                )
        missing = [t.name for t in model.inputs if not t.optional and t.name not in step.input_map]
        if missing:
            raise ConfigError(f"{_label(i, step)}: the model's inputs {missing} are not mapped")
    for out in config.outputs:
        datatype, shape, source = tensors[out.name]
        if not datatype:
            continue
        if datatype != out.datatype:
            raise ConfigError(
                f"ensemble output '{out.name}' is {out.datatype}, but {source} makes {datatype}"
            )
        if not _agree(shape, _shape(out, batched)):
            raise ConfigError(
                f"ensemble output '{out.name}' has shape {_shape(out, batched)}, but {source} "
                f"makes {shape}"
            )


async def run(
    config: ModelConfig,
    inputs: Outputs,
    wanted: list[str],
    call: StepCall,
    timings: dict[str, dict[str, float]] | None = None,
    functions: FunctionCall | None = None,
) -> Outputs:
    """Run the graph for one request: each step as soon as its inputs exist; a step whose
    condition fails is skipped, and so is every step that reads what it would make."""
    tensors = dict(inputs)
    steps = config.ensemble_steps
    remaining = set(range(len(steps)))
    skipped: list[int] = []
    running: dict[asyncio.Task[tuple[Outputs, float, float]], int] = {}
    step_times: dict[int, dict[str, float]] = {}
    start = time.perf_counter()

    def launch() -> None:
        for i in sorted(remaining):
            step = steps[i]
            if not all(t in tensors for t in _reads(step)):
                continue
            remaining.discard(i)
            if not _holds(step, tensors):
                skipped.append(i)
                continue
            feed = {m: tensors[t] for m, t in step.input_map.items()}
            outputs = list(step.output_map)
            timing = step_times.setdefault(i, {}) if timings is not None else None
            if step.function:
                assert functions is not None
                pending = functions(i, feed, outputs, timing)
            else:
                pending = call(step.model_name, _version(step), feed, outputs, timing)
            running[asyncio.ensure_future(_timed(pending))] = i

    try:
        launch()
        while running:
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                i = running.pop(task)
                step = steps[i]
                try:
                    outputs, began, took = task.result()
                except ConveyorError as exc:
                    # a copy: the same error object may fail every request of a batch
                    named = copy.copy(exc)
                    named.message = f"ensemble '{config.name}' {_label(i, step)}: {exc.message}"
                    named.args = (named.message,)
                    raise named from exc
                if timings is not None:
                    timings[f"{i}:{step.model_name}"] = {
                        "start_us": round((began - start) * 1e6, 1),
                        "total_us": round(took * 1e6, 1),
                        **step_times.get(i, {}),  # queue_us, compute_us, batch_rows
                    }
                for model_output, tensor in step.output_map.items():
                    if model_output not in outputs:
                        raise InvalidRequestError(
                            f"pipeline '{config.name}' {_label(i, step)}: it returned no "
                            f"'{model_output}' (returned: {', '.join(outputs)})"
                        )
                    tensors[tensor] = outputs[model_output]
            launch()
    finally:
        for task in running:
            task.cancel()
    missing = [name for name in wanted if name not in tensors]
    if missing:
        names = ", ".join(_label(i, steps[i]) for i in skipped) or "none"
        raise InvalidRequestError(
            f"pipeline '{config.name}': output {', '.join(repr(m) for m in missing)} was not "
            f"produced for this request (steps skipped by their conditions: {names})"
        )
    return {name: tensors[name] for name in wanted}


async def _timed(call: Awaitable[Outputs]) -> tuple[Outputs, float, float]:
    began = time.perf_counter()
    outputs = await call
    return outputs, began, time.perf_counter() - began


class PipelineRuntime(LoadedRuntime):
    """Stands for an ensemble or pipeline in the repository (its tensors); it never
    executes itself. It owns the worker processes of a pipeline's function steps, each
    step's (`instances` of them) behind a scheduler of its own, started on first use."""

    def __init__(self, config: ModelConfig, functions: dict[int, list[RequestRuntime]]) -> None:
        self._inputs, self._outputs = config_specs(config)
        self._schedulers: dict[int, Scheduler] = {}
        for i, runtimes in functions.items():
            step = config.ensemble_steps[i]
            fn_config = ModelConfig(
                name=f"{config.name}:{step.model_name.rpartition(':')[2]}",
                backend="python",
                max_batch_size=0,
            )
            self._schedulers[i] = Scheduler(fn_config, 1, list(runtimes))
        self._started = False

    async def call_function(
        self, index: int, feed: Outputs, wanted: list[str], timing: dict[str, float] | None = None
    ) -> Outputs:
        if not self._started:
            self._started = True
            for scheduler in self._schedulers.values():
                scheduler.start(asyncio.get_running_loop())
        scheduler = self._schedulers[index]
        start = time.perf_counter_ns()
        try:
            outputs = await scheduler.submit(
                feed, wanted, 1, (), context=RequestContext(timing=timing)
            )
        except BaseException as exc:
            elapsed = time.perf_counter_ns() - start
            scheduler.stats.record_request(False, elapsed, failure_reason(exc))
            raise
        scheduler.stats.record_request(True, time.perf_counter_ns() - start)
        return outputs

    @property
    def function_steps(self) -> list[Scheduler]:
        """The schedulers of the function steps (each named `pipeline:function`)."""
        return [self._schedulers[i] for i in sorted(self._schedulers)]

    def close(self) -> None:
        for scheduler in self._schedulers.values():
            scheduler.close()

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        raise ConfigError("an ensemble runs in the data plane, never on an instance")


class EnsembleBackend(Backend):
    """`platform: ensemble` and `platform: pipeline`. `python` starts the workers of a
    pipeline's function steps (the Python backend's)."""

    name = "ensemble"

    def __init__(self, python: Any = None) -> None:
        self.python = python
        self.lookup: Lookup | None = None

    def bind(self, caller: Any) -> None:
        self.lookup = caller.step_config

    def model_file(self, config: ModelConfig, version_dir: Path) -> Path:
        return version_dir

    def load(self, config: ModelConfig, version_dir: Path, instance_index: int) -> Runtime:
        if not config.inputs or not config.outputs:
            raise ConfigError("an ensemble's config must declare its inputs and outputs")
        if self.lookup is None:
            raise ConfigError("ensembles need the data plane (not wired in)")
        if instance_index == 0:
            validate(config, self.lookup)
        functions: dict[int, list[RequestRuntime]] = {}
        try:
            for i, step in enumerate(config.ensemble_steps):
                if step.function and instance_index == 0:
                    if self.python is None:
                        raise ConfigError("function steps need the Python backend")
                    functions[i] = []
                    for k in range(step.instances):
                        functions[i].append(
                            self.python.function_runtime(config, version_dir, step.model_name, k)
                        )
        except Exception:
            for runtimes in functions.values():
                for runtime in runtimes:
                    runtime.close()
            raise
        return PipelineRuntime(config, functions)
