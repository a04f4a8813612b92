"""OpenVINO backend: IR (`model.xml` and its `model.bin`) or any format OpenVINO reads
itself (`default_model_filename: model.onnx`), compiled for the CPU (or a GPU plugin).

Parameters, with the names of Triton's OpenVINO backend (older names in brackets):
- `PERFORMANCE_HINT`: LATENCY (default) | THROUGHPUT | CUMULATIVE_THROUGHPUT;
- `NUM_STREAMS` (`CPU_THROUGHPUT_STREAMS`): a number or AUTO;
- `INFERENCE_NUM_THREADS` (`CPU_THREADS_NUM`): threads for all streams;
- `INFERENCE_PRECISION_HINT`: f32 by default, so that the model computes what it was
  given, as the other runtimes do; `bf16` (or `ENFORCE_BF16: YES`) trades accuracy for
  speed on CPUs with bfloat16 units (OpenVINO's own default there);
- `ENABLE_CPU_PINNING` (`CPU_BIND_THREAD`): YES/NO;
- `SKIP_OV_DYNAMIC_BATCHSIZE`: YES keeps a model's static batch dimension as it is; by
  default a model with `max_batch_size > 0` in its config is reshaped to a dynamic batch.

The instances of a version share one compiled model, each with its own infer request,
so a THROUGHPUT hint's streams serve the instances side by side; the log says how many
requests OpenVINO finds optimal (`OPTIMAL_NUMBER_OF_INFER_REQUESTS`) when it differs from
the instance count.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.repository.config import ConfigError, ModelConfig
from conveyor.repository.layout import model_path
from conveyor.runtimes.base import Backend, LoadedRuntime, Runtime, TensorSpec

log = logging.getLogger("conveyor.runtimes.openvino")

INSTALL = "pip install 'conveyor[openvino]'"

ELEMENT_TYPES = {
    "f32": "FP32",
    "f16": "FP16",
    "bf16": "BF16",
    "f64": "FP64",
    "i8": "INT8",
    "i16": "INT16",
    "i32": "INT32",
    "i64": "INT64",
    "u8": "UINT8",
    "u16": "UINT16",
    "u32": "UINT32",
    "u64": "UINT64",
    "boolean": "BOOL",
}

# our name -> (OpenVINO property, older Triton name)
_PROPERTIES = {
    "PERFORMANCE_HINT": ("PERFORMANCE_HINT", None),
    "NUM_STREAMS": ("NUM_STREAMS", "CPU_THROUGHPUT_STREAMS"),
    "INFERENCE_NUM_THREADS": ("INFERENCE_NUM_THREADS", "CPU_THREADS_NUM"),
    "INFERENCE_PRECISION_HINT": ("INFERENCE_PRECISION_HINT", None),
    "ENABLE_CPU_PINNING": ("ENABLE_CPU_PINNING", "CPU_BIND_THREAD"),
}


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise ConfigError(f"OpenVINO is not installed: {INSTALL}") from None
    return openvino


def _yes(value: str) -> bool:
    return value.strip().upper() in ("YES", "TRUE", "1", "ON")


def compile_properties(config: ModelConfig) -> dict[str, str]:
    params = {k: str(v) for k, v in config.parameters.items()}
    props = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if _yes(params.get("ENFORCE_BF16", "NO")):
        props["INFERENCE_PRECISION_HINT"] = "bf16"
    for name, (prop, old) in _PROPERTIES.items():
        value = params.get(name, params.get(old, "") if old else "")
        if value:
            props[prop] = value
    if props.get("ENABLE_CPU_PINNING", "").upper() in ("YES", "NO", "NUMA"):
        props["ENABLE_CPU_PINNING"] = "YES" if props["ENABLE_CPU_PINNING"] != "NO" else "NO"
    props["PERFORMANCE_HINT"] = props["PERFORMANCE_HINT"].upper()
    if props["PERFORMANCE_HINT"] not in ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"):
        raise ConfigError(
            f"PERFORMANCE_HINT {props['PERFORMANCE_HINT']!r} is not LATENCY, THROUGHPUT "
            "or CUMULATIVE_THROUGHPUT"
        )
    return props


def _spec(port: Any) -> TensorSpec:
    kind = port.get_element_type().get_type_name()
    if kind not in ELEMENT_TYPES:
        raise ConfigError(f"tensor {port.get_any_name()!r} has unsupported type {kind}")
    shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), ELEMENT_TYPES[kind], shape)


class OpenVinoRuntime(LoadedRuntime):
    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._inputs = [_spec(p) for p in compiled.inputs]
        self._outputs = [_spec(p) for p in compiled.outputs]
        self._ports = {t.name: p for t, p in zip(self._outputs, compiled.outputs, strict=True)}

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        feed = {
            k: v if v.flags.c_contiguous else np.ascontiguousarray(v) for k, v in inputs.items()
        }
        results = self._request.infer(feed, share_inputs=True)
        return {name: np.array(results[self._ports[name]]) for name in outputs}

    def close(self) -> None:
        del self._request
        del self._compiled


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self) -> None:
        self._shared: tuple[Path, Any] | None = None  # the version being loaded

    def load(self, config: ModelConfig, version_dir: Path, instance_index: int) -> Runtime:
        ov = import_openvino()
        path = self.model_file(config, version_dir)
        if instance_index > 0 and self._shared is not None and self._shared[0] == path:
            return OpenVinoRuntime(self._shared[1])
        core = ov.Core()
        try:
            if path.suffix == ".xml":
                # the weights beside it, confined to the version directory like the IR
                weights = model_path(version_dir, path.with_suffix(".bin").name)
                if not weights.is_file():
                    raise ConfigError(f"{weights.name} (the IR's weights) is missing")
                model = core.read_model(str(path), str(weights))
            else:
                model = core.read_model(str(path))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"OpenVINO cannot read {path.name}: {exc}") from None
        skip = _yes(str(config.parameters.get("SKIP_OV_DYNAMIC_BATCHSIZE", "NO")))
        if config.max_batch_size > 0 and not skip:
            shapes = {}
            for port in model.inputs:
                shape = port.get_partial_shape()
                if shape.rank.is_static and len(shape) and shape[0].is_static:
                    shape[0] = ov.Dimension()  # dynamic
                    shapes[port.get_any_name()] = shape
            if shapes:
                model.reshape(shapes)
        device = "CPU"
        if config.instance_kind == "KIND_GPU":
            if "GPU" in core.available_devices:
                device = "GPU"
            else:
                log.warning("model %r asks for KIND_GPU, OpenVINO has no GPU: CPU", config.name)
        props = compile_properties(config)
        try:
            compiled = core.compile_model(model, device, props)
        except Exception as exc:
            raise ConfigError(f"OpenVINO cannot compile {path.name} for {device}: {exc}") from None
        optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        if optimal != config.instance_count:
            log.info(
                "model %r: OpenVINO (%s) finds %d parallel requests optimal; the config has "
                "%d instances",
                config.name,
                props["PERFORMANCE_HINT"],
                optimal,
                config.instance_count,
            )
        self._shared = (path, compiled) if config.instance_count > 1 else None
        return OpenVinoRuntime(compiled)
