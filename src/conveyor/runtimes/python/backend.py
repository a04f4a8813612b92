"""`backend: python`: each instance of a model is a worker process running its `model.py`.

`model.py` is either Triton's python-backend contract (`class TritonPythonModel`, with
`triton_python_backend_utils`) or Conveyor's own form (`class Model`, see
`stub/native.py`). The config must declare inputs and outputs, unless Triton's static
`auto_complete_config` adds them (it runs in the first instance's worker, before
`initialize`). `max_batch_size` defaults to 0, as in Triton.

Model parameters (`parameters:` in the config):
- `EXECUTION_ENV_PATH`: a Python environment (a virtualenv or conda directory, holding
  `bin/python`) to run the workers with; `$$TRITON_MODEL_DIRECTORY` is the model's
  directory. It must lie inside the model's directory (a config may come from the load
  API: it never names an interpreter elsewhere on the host). That environment needs
  numpy; it needs nothing of Conveyor.
- `shm_arena_bytes` (default 16 MiB): each worker's shared-memory arena (a memfd,
  half for each direction; pages are used only when touched). Bigger tensors travel
  inline over the socket instead.
- `execute_timeout_secs` (default 300; 0 = none): a worker that does not finish a
  batch in time is killed and restarted; the batch fails with that reason.
- `initialize_timeout_secs` (default 120): import + `initialize` of a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conveyor.repository.config import (
    ConfigError,
    ModelConfig,
    parse_config,
    to_triton_json,
)
from conveyor.repository.layout import model_path
from conveyor.runtimes.base import Backend, Caller, Runtime, config_specs
from conveyor.runtimes.python.metrics import CustomMetrics
from conveyor.runtimes.python.process import (
    PythonRuntime,
    WorkerSpec,
    WorkerStartError,
    default_interpreter,
)

DEFAULT_ARENA_BYTES = 16 << 20


def _float(config: ModelConfig, key: str, default: float) -> float:
    try:
        return float(config.parameters.get(key, default))
    except ValueError:
        raise ConfigError(f"parameter {key} must be a number") from None


def interpreter_for(config: ModelConfig, model_dir: Path) -> str:
    """The interpreter named by EXECUTION_ENV_PATH (confined to the model directory)."""
    raw = config.parameters.get("EXECUTION_ENV_PATH", "")
    if not raw:
        return default_interpreter()
    named = raw.replace("$$TRITON_MODEL_DIRECTORY", str(model_dir))
    env = Path(named) if Path(named).is_absolute() else model_dir / named
    try:
        inside = env.resolve().is_relative_to(model_dir.resolve())
    except (OSError, RuntimeError, ValueError):
        inside = False
    if not inside:
        raise ConfigError(
            f"EXECUTION_ENV_PATH {raw!r} is outside the model's directory: refused "
            "(put the environment under the model's directory, e.g. "
            "$$TRITON_MODEL_DIRECTORY/env)"
        )
    if env.name.endswith((".tar.gz", ".tgz")):
        raise ConfigError(
            f"EXECUTION_ENV_PATH {raw!r}: packed environments are not supported; unpack it "
            "into a directory inside the model's directory and name that directory"
        )
    for candidate in ("bin/python3", "bin/python"):
        if (env / candidate).exists():
            return str(env / candidate)
    raise ConfigError(f"EXECUTION_ENV_PATH {raw!r} holds no bin/python3 or bin/python")


def _adopt(config: ModelConfig, completed: dict[str, Any]) -> None:
    """What `auto_complete_config` added, into the config being loaded."""
    try:
        new = parse_config(completed, config.name)
    except ConfigError as exc:
        raise ConfigError(f"auto_complete_config produced an invalid config: {exc}") from None
    if not config.inputs:
        config.inputs = new.inputs
    if not config.outputs:
        config.outputs = new.outputs
    config.max_batch_size = max(new.max_batch_size, 0)
    if config.dynamic_batching is None and new.dynamic_batching is not None:
        config.dynamic_batching = new.dynamic_batching
    config.decoupled = config.decoupled or new.decoupled


class PythonBackend(Backend):
    name = "python"

    def __init__(self) -> None:
        self.caller: Caller | None = None
        self.metrics = CustomMetrics()

    def bind(self, caller: Caller) -> None:
        self.caller = caller

    def render_metrics(self) -> str:
        return self.metrics.render()

    def function_runtime(
        self, config: ModelConfig, version_dir: Path, function: str, index: int = 0
    ) -> PythonRuntime:
        """A worker running one function (`FILE.py:NAME`) of a pipeline's version
        directory: `NAME(inputs) -> outputs`, Conveyor's model form without a class."""
        file, _, name = function.rpartition(":")
        path = model_path(version_dir, file, "function")
        if not path.is_file():
            raise ConfigError(f"function {function!r}: {path} is missing")
        spec = WorkerSpec(
            model=config.name,
            version=int(version_dir.name) if version_dir.name.isdigit() else 1,
            instance_index=index,
            instance_name=f"{config.name}_{name}_{index}",
            interpreter=interpreter_for(config, version_dir.parent),
            model_file=path,
            config_json={
                "name": config.name,
                "max_batch_size": 0,
                "parameters": {"conveyor_function": {"string_value": name}},
            },
            arena_bytes=int(_float(config, "shm_arena_bytes", DEFAULT_ARENA_BYTES)),
            init_timeout_s=_float(config, "initialize_timeout_secs", 120.0),
            execute_timeout_s=_float(config, "execute_timeout_secs", 300.0),
        )
        runtime = PythonRuntime(spec, [], [], self.caller, self.metrics, {})
        try:
            runtime.spawn()
        except WorkerStartError as exc:
            raise ConfigError(f"function {function!r}: {exc}") from None
        return runtime

    def model_file(self, config: ModelConfig, version_dir: Path) -> Path:
        path = model_path(version_dir, config.default_model_filename)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        return path

    def load(self, config: ModelConfig, version_dir: Path, instance_index: int) -> Runtime:
        path = self.model_file(config, version_dir)
        first = instance_index == 0
        if first and config.max_batch_size < 0:
            config.max_batch_size = 0  # Triton's default for python models
        json_config = to_triton_json(config)
        spec = WorkerSpec(
            model=config.name,
            version=int(version_dir.name) if version_dir.name.isdigit() else 1,
            instance_index=instance_index,
            instance_name=f"{config.name}_0_{instance_index}",
            interpreter=interpreter_for(config, version_dir.parent),
            model_file=path,
            config_json=json_config,
            arena_bytes=int(_float(config, "shm_arena_bytes", DEFAULT_ARENA_BYTES)),
            init_timeout_s=_float(config, "initialize_timeout_secs", 120.0),
            execute_timeout_s=_float(config, "execute_timeout_secs", 300.0),
            autocomplete=first,
        )
        inputs, outputs = config_specs(config)
        types = {t.name: t.datatype for t in config.outputs}
        runtime = PythonRuntime(spec, inputs, outputs, self.caller, self.metrics, types)
        try:
            runtime.spawn()
        except WorkerStartError as exc:
            raise ConfigError(f"python model: {exc}") from None
        if first and runtime.completed_config is not None:
            _adopt(config, runtime.completed_config)
            runtime._inputs, runtime._outputs = config_specs(config)
            runtime._output_types = {t.name: t.datatype for t in config.outputs}
            runtime.decoupled = config.decoupled
        return runtime
