"""ONNX Runtime backend: one InferenceSession per instance, run from the instance's thread.

Session options come from the config, with Triton's onnxruntime-backend names:
`parameters.intra_op_thread_count`, `parameters.inter_op_thread_count`,
`optimization.graph.level` (-1 none, 1 basic, 2 extended, 0/absent all), and
`instance_group.kind` / `optimization.execution_accelerators` for CUDA/TensorRT.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from conveyor.datatypes import ORT_TO_V2
from conveyor.errors import InvalidRequestError
from conveyor.repository.config import ModelConfig
from conveyor.runtimes.base import Backend, LoadedRuntime, Runtime, TensorSpec

log = logging.getLogger("conveyor.runtimes.onnx")

_GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    2: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
}


def _spec(arg: ort.NodeArg) -> TensorSpec:
    try:
        datatype = ORT_TO_V2[arg.type]
    except KeyError:
        raise ValueError(f"tensor {arg.name!r} has unsupported type {arg.type}") from None
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, datatype, shape)


def choose_providers(config: ModelConfig, available: list[str]) -> list[str]:
    """Execution providers for the instance kind, falling back to CPU with a log line."""
    kind = config.instance_kind
    wanted: list[str] = []
    if kind in ("KIND_GPU", "KIND_AUTO"):
        if "tensorrt" in config.gpu_accelerators:
            wanted.append("TensorrtExecutionProvider")
        wanted.append("CUDAExecutionProvider")
    chosen = [p for p in wanted if p in available]
    if kind == "KIND_GPU" and not chosen:
        log.warning(
            "model %r asks for KIND_GPU but ONNX Runtime offers %s: running on CPU",
            config.name,
            ", ".join(available),
        )
    elif "tensorrt" in config.gpu_accelerators and "TensorrtExecutionProvider" not in chosen:
        log.warning("model %r: TensorRT execution provider unavailable, skipped", config.name)
    return [*chosen, "CPUExecutionProvider"]


def _to_text(name: str, arr: np.ndarray) -> np.ndarray:
    out = np.empty(arr.shape, dtype=object)
    try:
        out.reshape(-1)[:] = [
            x.decode() if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)
        ]
    except UnicodeDecodeError:
        raise InvalidRequestError(
            f"input '{name}': this ONNX model takes UTF-8 text, the bytes are not UTF-8"
        ) from None
    return out


def _to_bytes(arr: np.ndarray) -> np.ndarray:
    out = np.empty(arr.shape, dtype=object)
    out.reshape(-1)[:] = [x.encode() if isinstance(x, str) else x for x in arr.reshape(-1)]
    return out


class OnnxRuntime(LoadedRuntime):
    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._inputs = [_spec(a) for a in session.get_inputs()]
        self._outputs = [_spec(a) for a in session.get_outputs()]
        # ONNX Runtime's string tensors are UTF-8 text (Python str), ours are bytes
        self._text_inputs = {t.name for t in self._inputs if t.datatype == "BYTES"}
        self._text_outputs = {t.name for t in self._outputs if t.datatype == "BYTES"}

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        if self._text_inputs:
            inputs = {k: _to_text(k, v) if k in self._text_inputs else v for k, v in inputs.items()}
        results = dict(zip(outputs, self._session.run(outputs, inputs), strict=True))
        for name in self._text_outputs.intersection(results):
            results[name] = _to_bytes(results[name])
        return results

    def close(self) -> None:
        del self._session


class OnnxBackend(Backend):
    name = "onnxruntime"

    def session_options(self, config: ModelConfig) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        params = config.parameters
        # Instances run side by side: by default share the cores between them instead
        # of letting every session spin up one thread per core.
        cores = os.cpu_count() or 1
        default_intra = max(1, cores // max(1, config.instance_count))
        opts.intra_op_num_threads = int(params.get("intra_op_thread_count", default_intra))
        opts.inter_op_num_threads = int(params.get("inter_op_thread_count", 1))
        opts.graph_optimization_level = _GRAPH_LEVELS.get(
            config.graph_optimization_level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        spinning = params.get("intra_op_spinning")
        if spinning is not None:  # ORT's threads spin between ops by default
            allow = str(spinning).strip().lower() in ("1", "true", "yes", "on")
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow else "0")
        opts.log_severity_level = 3
        return opts

    def load(self, config: ModelConfig, version_dir: Path, instance_index: int) -> Runtime:
        path = self.model_file(config, version_dir)
        providers = choose_providers(config, ort.get_available_providers())
        gpu = config.instance_gpu(instance_index)
        options = [
            {"device_id": gpu} if gpu is not None and p != "CPUExecutionProvider" else {}
            for p in providers
        ]
        session = ort.InferenceSession(
            str(path),
            sess_options=self.session_options(config),
            providers=providers,
            provider_options=options,
        )
        return OnnxRuntime(session)
