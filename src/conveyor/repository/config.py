"""Typed model configuration, parsed once from YAML, Triton's config.pbtxt or JSON.

Field names follow Triton's `model_config.proto` wherever Triton has the concept,
so a Triton user recognises them. `to_triton_json` renders Triton's JSON form (what
`/v2/models/{m}/config` returns and `perf_analyzer` reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from conveyor.datatypes import V2_TO_TRITON, normalize_datatype


class ConfigError(ValueError):
    """The configuration itself is invalid (independent of the model file)."""


@dataclass(slots=True)
class TensorConfig:
    name: str
    datatype: str  # V2 name: FP32, BYTES...
    dims: list[int]  # without the batch dimension when max_batch_size > 0; -1 = variable
    reshape: list[int] | None = None  # the shape the model sees (without batch dim)
    optional: bool = False


@dataclass(slots=True)
class QueuePolicy:
    timeout_action: str = "REJECT"  # REJECT | DELAY
    default_timeout_microseconds: int = 0  # 0 = no timeout
    allow_timeout_override: bool = True
    max_queue_size: int = 0  # 0 = unbounded


@dataclass(slots=True)
class DynamicBatching:
    preferred_batch_size: list[int] = field(default_factory=list)
    max_queue_delay_microseconds: int = 0
    preserve_ordering: bool = False
    priority_levels: int = 0  # 0 = one level
    default_priority_level: int = 0
    default_queue_policy: QueuePolicy = field(default_factory=QueuePolicy)
    priority_queue_policy: dict[int, QueuePolicy] = field(default_factory=dict)


@dataclass(slots=True)
class InstanceGroup:
    count: int = 1
    kind: str = "KIND_AUTO"  # KIND_AUTO | KIND_CPU | KIND_GPU
    gpus: list[int] = field(default_factory=list)
    name: str = ""


@dataclass(slots=True)
class VersionPolicy:
    kind: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: list[int] = field(default_factory=list)


@dataclass(slots=True)
class EnsembleStep:
    """One step of Triton's `ensemble_scheduling`: which model runs, and how its tensors
    map to the ensemble's (model tensor name -> ensemble tensor name)."""

    model_name: str  # for a function step: "<file>:<function>"
    model_version: int = -1  # -1: the model's default version
    input_map: dict[str, str] = field(default_factory=dict)
    output_map: dict[str, str] = field(default_factory=dict)
    # native pipelines only: a Python function of the pipeline's directory, and a condition
    function: bool = False
    when: tuple[str, str, Any] | None = None  # (tensor, "equals" | "not_equals", value)
    instances: int = 1  # a function step's worker processes


@dataclass(slots=True)
class ModelConfig:
    name: str
    platform: str = "onnxruntime_onnx"
    backend: str = "onnxruntime"
    max_batch_size: int = -1  # -1 until completed from the model file
    inputs: list[TensorConfig] = field(default_factory=list)
    outputs: list[TensorConfig] = field(default_factory=list)
    dynamic_batching: DynamicBatching | None = None
    instance_group: list[InstanceGroup] = field(default_factory=lambda: [InstanceGroup()])
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    parameters: dict[str, str] = field(default_factory=dict)
    default_model_filename: str = "model.onnx"
    graph_optimization_level: int = 0  # Triton's optimization.graph.level
    gpu_accelerators: list[str] = field(default_factory=list)  # e.g. ["tensorrt"]
    # TF-Serving-style labels (name -> version) and a weighted split of unversioned
    # traffic across versions (version -> weight), for canaries and A/B tests
    version_labels: dict[str, int] = field(default_factory=dict)
    traffic_split: dict[int, float] = field(default_factory=dict)
    model_warmup: list[Any] = field(default_factory=list)  # warmup.WarmupSample
    # Triton's model_transaction_policy.decoupled: any number of responses per request
    decoupled: bool = False
    ensemble_steps: list[EnsembleStep] = field(default_factory=list)  # platform: ensemble

    @property
    def instance_count(self) -> int:
        return sum(g.count for g in self.instance_group)

    @property
    def instance_kind(self) -> str:
        return self.instance_group[0].kind if self.instance_group else "KIND_AUTO"

    def instance_gpu(self, index: int) -> int | None:
        """The GPU of instance `index` (counting across groups), when its group names GPUs."""
        for group in self.instance_group:
            if index < group.count:
                return group.gpus[index % len(group.gpus)] if group.gpus else None
            index -= group.count
        return None

    def input(self, name: str) -> TensorConfig | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorConfig | None:
        return next((t for t in self.outputs if t.name == name), None)


# --- parsing -----------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be an integer, got {value!r}") from None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _tensor(raw: Any, where: str) -> TensorConfig:
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"each {where} needs a name")
    name = str(raw["name"])
    try:
        datatype = normalize_datatype(str(raw.get("data_type", raw.get("datatype", ""))))
    except ValueError as exc:
        raise ConfigError(f"{where} '{name}': {exc}") from None
    dims = [_int(d, f"{where} '{name}' dims") for d in _as_list(raw.get("dims"))]
    if any(d < -1 or d == 0 for d in dims):
        raise ConfigError(f"{where} '{name}': dims must be positive or -1, got {dims}")
    reshape = None
    if raw.get("reshape") is not None:
        shape = raw["reshape"].get("shape") if isinstance(raw["reshape"], dict) else raw["reshape"]
        reshape = [_int(d, f"{where} '{name}' reshape") for d in _as_list(shape)]
    return TensorConfig(name, datatype, dims, reshape, _bool(raw.get("optional", False)))


def _queue_policy(raw: Any) -> QueuePolicy:
    raw = raw or {}
    action = str(raw.get("timeout_action", "REJECT")).upper()
    if action not in ("REJECT", "DELAY"):
        raise ConfigError(f"timeout_action must be REJECT or DELAY, got {action!r}")
    return QueuePolicy(
        timeout_action=action,
        default_timeout_microseconds=_int(raw.get("default_timeout_microseconds", 0), "timeout"),
        allow_timeout_override=_bool(raw.get("allow_timeout_override", True)),
        max_queue_size=_int(raw.get("max_queue_size", 0), "max_queue_size"),
    )


def _dynamic_batching(raw: Any, max_batch_size: int) -> DynamicBatching:
    raw = raw or {}
    db = DynamicBatching(
        preferred_batch_size=sorted(
            _int(s, "preferred_batch_size") for s in _as_list(raw.get("preferred_batch_size"))
        ),
        max_queue_delay_microseconds=_int(raw.get("max_queue_delay_microseconds", 0), "delay"),
        preserve_ordering=_bool(raw.get("preserve_ordering", False)),
        priority_levels=_int(raw.get("priority_levels", 0), "priority_levels"),
        default_priority_level=_int(raw.get("default_priority_level", 0), "priority level"),
        default_queue_policy=_queue_policy(raw.get("default_queue_policy")),
    )
    pqp = _map_entries(raw.get("priority_queue_policy"), "priority_queue_policy")
    db.priority_queue_policy = {_int(k, "priority"): _queue_policy(v) for k, v in pqp.items()}
    for size in db.preferred_batch_size:
        if not 0 < size <= max(max_batch_size, 1):
            raise ConfigError(f"preferred_batch_size {size} is outside 1..max_batch_size")
    if db.priority_levels < 0 or db.max_queue_delay_microseconds < 0:
        raise ConfigError("priority_levels and max_queue_delay_microseconds must be >= 0")
    if db.priority_levels and not 0 < db.default_priority_level <= db.priority_levels:
        if db.default_priority_level != 0:
            raise ConfigError(
                f"default_priority_level {db.default_priority_level} is outside "
                f"1..{db.priority_levels}"
            )
        db.default_priority_level = (db.priority_levels + 1) // 2
    return db


def _version_policy(raw: Any) -> VersionPolicy:
    if not raw:
        return VersionPolicy()
    if "all" in raw:
        return VersionPolicy(kind="all")
    if "specific" in raw:
        versions = [_int(v, "version") for v in _as_list((raw["specific"] or {}).get("versions"))]
        if not versions:
            raise ConfigError("version_policy.specific needs at least one version")
        return VersionPolicy(kind="specific", versions=versions)
    latest = raw.get("latest") or {}
    num = _int(latest.get("num_versions", 1), "num_versions")
    if num < 1:
        raise ConfigError("version_policy.latest.num_versions must be >= 1")
    return VersionPolicy(kind="latest", num_versions=num)


def _map_entries(raw: Any, what: str = "a map") -> dict[Any, Any]:
    """A map as a dict: pbtxt writes one as repeated {key: k, value: v} messages. Anything
    else that is not a mapping is a ConfigError naming `what`."""
    if raw is None:
        return {}
    if isinstance(raw, dict) and set(raw) == {"key", "value"}:
        raw = [raw]
    if isinstance(raw, list):
        if not all(isinstance(e, dict) and isinstance(e.get("key"), str | int) for e in raw):
            raise ConfigError(f"{what} must be a mapping (or a list of {{key, value}} entries)")
        return {entry["key"]: entry.get("value") for entry in raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} must be a mapping, got {raw!r}")
    return raw


def _parameters(raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in _map_entries(raw, "parameters").items():
        if isinstance(value, dict):
            value = value.get("string_value", "")
        out[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _model_filename(raw: Any) -> str:
    """A plain relative path: the file must lie in the version directory (checked again,
    symlinks followed, when the model loads: layout.model_path)."""
    name = str(raw or "model.onnx")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ConfigError(
            f"default_model_filename {name!r} leaves the model's version directory "
            "(absolute or with '..'): refused"
        )
    return name


def _str_map(raw: Any, what: str) -> dict[str, str]:
    entries = _map_entries(raw, what)
    return {str(k): str(v) for k, v in entries.items()}


def _ensemble_steps(raw: Any) -> list[EnsembleStep]:
    steps = []
    for i, step in enumerate(_as_list((raw or {}).get("step"))):
        if not isinstance(step, dict) or not step.get("model_name"):
            raise ConfigError(f"ensemble_scheduling step {i} needs a model_name")
        steps.append(
            EnsembleStep(
                model_name=str(step["model_name"]),
                model_version=_int(step.get("model_version", -1), f"step {i} model_version"),
                input_map=_str_map(step.get("input_map"), f"step {i} input_map"),
                output_map=_str_map(step.get("output_map"), f"step {i} output_map"),
            )
        )
    if not steps:
        raise ConfigError("an ensemble needs ensemble_scheduling with at least one step")
    return steps


def _pipeline_steps(raw: Any) -> list[EnsembleStep]:
    """Conveyor's native pipeline: `pipeline: {steps: [...]}`, each step a `model` (with
    an optional `version`) or a `function: FILE.py:NAME` of the pipeline's version
    directory, with `inputs` / `outputs` maps (step tensor -> pipeline tensor) and an
    optional `when: {tensor: T, equals: V}` (or `not_equals`); a function step may ask
    for `instances: N` worker processes (default 1)."""
    steps = []
    for i, step in enumerate(_as_list((raw or {}).get("steps"))):
        if not isinstance(step, dict) or bool(step.get("model")) == bool(step.get("function")):
            raise ConfigError(f"pipeline step {i} needs exactly one of 'model' or 'function'")
        when = None
        if step.get("when") is not None:
            cond = step["when"]
            ops = [op for op in ("equals", "not_equals") if op in (cond or {})]
            if not isinstance(cond, dict) or "tensor" not in cond or len(ops) != 1:
                raise ConfigError(
                    f"pipeline step {i}: 'when' needs a tensor and one of equals / not_equals"
                )
            when = (str(cond["tensor"]), ops[0], cond[ops[0]])
        function = step.get("function")
        instances = _int(step.get("instances", 1), f"step {i} instances")
        if function is not None:
            file, _, name = str(function).rpartition(":")
            if not file.endswith(".py") or not name.isidentifier():
                raise ConfigError(
                    f"pipeline step {i}: function {function!r} must be 'FILE.py:NAME'"
                )
        if instances != 1 and (function is None or not 1 <= instances <= 64):
            raise ConfigError(
                f"pipeline step {i}: 'instances' is for function steps, 1 to 64 "
                f"(a model step's instances are its model's instance_group)"
            )
        steps.append(
            EnsembleStep(
                model_name=str(function or step["model"]),
                model_version=_int(step.get("version", -1), f"step {i} version"),
                input_map=_str_map(step.get("inputs"), f"step {i} inputs"),
                output_map=_str_map(step.get("outputs"), f"step {i} outputs"),
                function=function is not None,
                when=when,
                instances=instances,
            )
        )
    if not steps:
        raise ConfigError("a pipeline needs `pipeline: {steps: [...]}` with at least one step")
    return steps


def parse_warmup(raw: Any) -> list[Any]:
    from conveyor.repository.warmup import parse_warmup as parse

    return parse(raw)


def parse_labels(raw: Any) -> dict[str, int]:
    out = {}
    for label, version in _map_entries(raw, "version_labels").items():
        label = str(label)
        if not label or label.isdigit():
            raise ConfigError(f"version label {label!r} must be a non-numeric name")
        out[label] = _int(version, f"version label '{label}'")
    return out


def parse_split(raw: Any) -> dict[int, float]:
    out = {}
    for version, weight in _map_entries(raw, "traffic_split").items():
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"traffic_split weight {weight!r} is not a number") from None
        if w < 0:
            raise ConfigError("traffic_split weights must be >= 0")
        out[_int(version, "traffic_split version")] = w
    if out and not sum(out.values()):
        raise ConfigError("traffic_split weights add up to 0")
    return out


# Triton's platform names, and the backend serving each (the config may give either)
PLATFORM_BACKENDS = {
    "pytorch_libtorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "openvino": "openvino",
}
BACKEND_PLATFORMS = {b: p for p, b in PLATFORM_BACKENDS.items()}
# the file (or, for a SavedModel, directory) a version directory holds, as in Triton
DEFAULT_MODEL_FILENAMES = {
    "python": "model.py",
    "pytorch": "model.pt",
    "tensorflow": "model.savedmodel",
    "openvino": "model.xml",
}


def parse_config(raw: dict[str, Any], default_name: str) -> ModelConfig:
    """Build a ModelConfig from a YAML/JSON/pbtxt dictionary with Triton's field names."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping")
    name = str(raw.get("name") or default_name)
    if name != default_name:
        raise ConfigError(f"config name {name!r} differs from the directory name {default_name!r}")
    # -1 = not given: completed from the model file (see autocomplete.py)
    max_batch_size = _int(raw.get("max_batch_size", -1), "max_batch_size")
    if max_batch_size < -1:
        raise ConfigError("max_batch_size must be >= 0")
    platform = str(raw.get("platform", "") or "")
    backend = str(raw.get("backend", "") or "")
    if backend in ("", "onnxruntime", "onnx") and platform in ("", "onnxruntime_onnx"):
        platform, backend = "onnxruntime_onnx", "onnxruntime"
    elif not backend:
        backend = PLATFORM_BACKENDS.get(platform, platform)
    elif not platform:
        platform = BACKEND_PLATFORMS.get(backend, "")
    groups = []
    for g in _as_list(raw.get("instance_group")):
        kind = str(g.get("kind", "KIND_AUTO")).upper()
        if kind not in ("KIND_AUTO", "KIND_CPU", "KIND_GPU"):
            raise ConfigError(f"instance_group kind {kind!r} is not KIND_AUTO/KIND_CPU/KIND_GPU")
        count = _int(g.get("count", 1), "instance_group.count")
        if count < 1:
            raise ConfigError("instance_group.count must be >= 1")
        gpus = [_int(x, "gpus") for x in _as_list(g.get("gpus"))]
        groups.append(InstanceGroup(count, kind, gpus, str(g.get("name", ""))))
    optimization = raw.get("optimization") or {}
    accelerators = (optimization.get("execution_accelerators") or {}).get(
        "gpu_execution_accelerator"
    )
    config = ModelConfig(
        name=name,
        platform=platform,
        backend=backend,
        max_batch_size=max_batch_size,
        inputs=[_tensor(t, "input") for t in _as_list(raw.get("input", raw.get("inputs")))],
        outputs=[_tensor(t, "output") for t in _as_list(raw.get("output", raw.get("outputs")))],
        instance_group=groups or [InstanceGroup()],
        version_policy=_version_policy(raw.get("version_policy")),
        parameters=_parameters(raw.get("parameters")),
        default_model_filename=_model_filename(
            raw.get("default_model_filename") or DEFAULT_MODEL_FILENAMES.get(backend, "")
        ),
        graph_optimization_level=_int(
            (optimization.get("graph") or {}).get("level", 0), "optimization.graph.level"
        ),
        gpu_accelerators=[str(a.get("name", "")).lower() for a in _as_list(accelerators)],
        version_labels=parse_labels(raw.get("version_labels")),
        traffic_split=parse_split(raw.get("traffic_split")),
        model_warmup=parse_warmup(raw.get("model_warmup")),
        decoupled=_bool((raw.get("model_transaction_policy") or {}).get("decoupled", False)),
    )
    if platform in ("ensemble", "pipeline"):
        config.ensemble_steps = (
            _ensemble_steps(raw.get("ensemble_scheduling"))
            if platform == "ensemble"
            else _pipeline_steps(raw.get("pipeline"))
        )
        config.default_model_filename = ""
        if config.max_batch_size < 0:
            config.max_batch_size = 0
    if "dynamic_batching" in raw:
        if max_batch_size == 0:
            raise ConfigError("dynamic_batching needs max_batch_size > 0")
        # validated again against the completed max_batch_size in autocomplete
        config.dynamic_batching = _dynamic_batching(raw["dynamic_batching"], max_batch_size)
    return config


# --- Triton's JSON form ------------------------------------------------------------


def _tensor_json(t: TensorConfig, is_input: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": t.name,
        "data_type": V2_TO_TRITON[t.datatype],
        "dims": list(t.dims),
        "label_filename": "",
        "is_shape_tensor": False,
    }
    if is_input:
        out.update(format="FORMAT_NONE", allow_ragged_batch=False, optional=t.optional)
    if t.reshape is not None:
        out["reshape"] = {"shape": list(t.reshape)}
    return out


def _queue_json(q: QueuePolicy) -> dict[str, Any]:
    return {
        "timeout_action": q.timeout_action,
        "default_timeout_microseconds": q.default_timeout_microseconds,
        "allow_timeout_override": q.allow_timeout_override,
        "max_queue_size": q.max_queue_size,
    }


def to_triton_json(c: ModelConfig) -> dict[str, Any]:
    vp: dict[str, Any]
    if c.version_policy.kind == "all":
        vp = {"all": {}}
    elif c.version_policy.kind == "specific":
        vp = {"specific": {"versions": list(c.version_policy.versions)}}
    else:
        vp = {"latest": {"num_versions": c.version_policy.num_versions}}
    out: dict[str, Any] = {
        "name": c.name,
        "platform": c.platform,
        "backend": c.backend,
        "version_policy": vp,
        "max_batch_size": c.max_batch_size,
        "input": [_tensor_json(t, True) for t in c.inputs],
        "output": [_tensor_json(t, False) for t in c.outputs],
        "instance_group": [
            {
                "name": g.name or f"{c.name}_{i}",
                "kind": g.kind,
                "count": g.count,
                "gpus": list(g.gpus),
            }
            for i, g in enumerate(c.instance_group)
        ],
        "default_model_filename": c.default_model_filename,
        "parameters": {k: {"string_value": v} for k, v in c.parameters.items()},
        "optimization": {"graph": {"level": c.graph_optimization_level}},
        "model_transaction_policy": {"decoupled": c.decoupled},
    }
    if c.platform == "pipeline":
        out["pipeline"] = {
            "steps": [
                {
                    ("function" if s.function else "model"): s.model_name,
                    "inputs": dict(s.input_map),
                    "outputs": dict(s.output_map),
                    **(
                        {"when": {"tensor": s.when[0], s.when[1]: s.when[2]}}
                        if s.when is not None
                        else {}
                    ),
                    **({"instances": s.instances} if s.instances != 1 else {}),
                }
                for s in c.ensemble_steps
            ]
        }
    elif c.ensemble_steps:
        out["ensemble_scheduling"] = {
            "step": [
                {
                    "model_name": s.model_name,
                    "model_version": s.model_version,
                    "input_map": dict(s.input_map),
                    "output_map": dict(s.output_map),
                }
                for s in c.ensemble_steps
            ]
        }
    if c.version_labels:
        out["version_labels"] = dict(c.version_labels)
    if c.traffic_split:
        out["traffic_split"] = {str(k): v for k, v in c.traffic_split.items()}
    if c.dynamic_batching is not None:
        db = c.dynamic_batching
        out["dynamic_batching"] = {
            "preferred_batch_size": list(db.preferred_batch_size),
            "max_queue_delay_microseconds": db.max_queue_delay_microseconds,
            "preserve_ordering": db.preserve_ordering,
            "priority_levels": db.priority_levels,
            "default_priority_level": db.default_priority_level,
            "default_queue_policy": _queue_json(db.default_queue_policy),
            "priority_queue_policy": {
                str(k): _queue_json(v) for k, v in db.priority_queue_policy.items()
            },
        }
    return out
