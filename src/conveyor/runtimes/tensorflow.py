"""TensorFlow backend: a SavedModel directory (`model.savedmodel/`, Triton's
`tensorflow_savedmodel`), including what Keras 3's `model.export()` writes, run through
one of its signatures.

The signature served is `serving_default` unless the config's parameters name another
(`TF_SIGNATURE_DEF`, Triton's name); its inputs and outputs, dtypes and shapes complete
the config. Every signature of the SavedModel is listed in TF-Serving's `/metadata`; a
`:predict` request naming a signature other than the one served is refused with a 400
that says which one is (serve another signature as a second model whose config names
it: a model directory of its own, the SavedModel linked inside the repository).

Threads (seed 002's knobs): `TF_NUM_INTRA_THREADS` / `TF_NUM_INTER_THREADS` (or the
ONNX backend's `intra_op_thread_count` / `inter_op_thread_count`). TensorFlow has one
pair of thread pools per process, fixed when it first runs: the first TensorFlow model
loaded with a setting sets them for every TensorFlow model; a later model that asks for
other values gets a warning in the log. Without a setting, TensorFlow's defaults (a
thread per core in each pool).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.repository.config import ConfigError, ModelConfig
from conveyor.repository.layout import check_inside_repository
from conveyor.runtimes.base import Backend, LoadedRuntime, Runtime, TensorSpec

log = logging.getLogger("conveyor.runtimes.tensorflow")

INSTALL = "pip install 'conveyor[tensorflow]'"
DEFAULT_SIGNATURE = "serving_default"
_threads_set: dict[str, int] = {}  # intra / inter, once set for the process


def import_tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ banner per process
    try:
        import tensorflow as tf
    except ImportError:
        raise ConfigError(f"TensorFlow is not installed: {INSTALL}") from None
    return tf


def _dtypes(tf: Any) -> dict[Any, str]:
    return {
        tf.bool: "BOOL",
        tf.uint8: "UINT8",
        tf.uint16: "UINT16",
        tf.uint32: "UINT32",
        tf.uint64: "UINT64",
        tf.int8: "INT8",
        tf.int16: "INT16",
        tf.int32: "INT32",
        tf.int64: "INT64",
        tf.float16: "FP16",
        tf.bfloat16: "BF16",
        tf.float32: "FP32",
        tf.float64: "FP64",
        tf.string: "BYTES",
    }


def _spec(tf: Any, name: str, spec: Any) -> TensorSpec:
    datatype = _dtypes(tf).get(spec.dtype)
    if datatype is None:
        raise ConfigError(f"tensor {name!r} has unsupported dtype {spec.dtype.name}")
    if spec.shape.rank is None:
        raise ConfigError(f"tensor {name!r} has an unknown rank: the signature must give one")
    return TensorSpec(name, datatype, tuple(-1 if d is None else int(d) for d in spec.shape))


def signature_specs(tf: Any, function: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    args, kwargs = function.structured_input_signature
    if args:
        raise ConfigError("the signature takes positional inputs: a serving signature names them")
    outputs = function.structured_outputs
    if not isinstance(outputs, dict):
        raise ConfigError("the signature's outputs are not named (a dict of tensors)")
    return (
        [_spec(tf, k, v) for k, v in sorted(kwargs.items())],
        [_spec(tf, k, v) for k, v in sorted(outputs.items())],
    )


class TensorFlowRuntime(LoadedRuntime):
    def __init__(self, loaded: Any, signature: str) -> None:
        self._tf = tf = import_tensorflow()
        self._loaded = loaded  # keeps the variables the functions use alive
        self.signature = signature
        self._function = loaded.signatures[signature]
        self._inputs, self._outputs = signature_specs(tf, self._function)
        self.signatures: dict[str, tuple[list[TensorSpec], list[TensorSpec]]] = {}
        for name, function in loaded.signatures.items():
            try:
                self.signatures[name] = signature_specs(tf, function)
            except ConfigError as exc:
                log.info("signature %r is not servable: %s", name, exc)

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        tf = self._tf
        feed = {k: tf.constant(v) for k, v in inputs.items()}
        results = self._function(**feed)
        return {name: results[name].numpy() for name in outputs}

    def close(self) -> None:
        del self._function
        del self._loaded


class TensorFlowBackend(Backend):
    name = "tensorflow"

    def model_file(self, config: ModelConfig, version_dir: Path) -> Path:
        path = version_dir / config.default_model_filename
        if not (path / "saved_model.pb").is_file():
            raise FileNotFoundError(f"{path} is not a SavedModel directory (no saved_model.pb)")
        return path

    def _threads(self, tf: Any, config: ModelConfig) -> None:
        params = config.parameters
        wanted = {
            "intra": params.get("TF_NUM_INTRA_THREADS", params.get("intra_op_thread_count")),
            "inter": params.get("TF_NUM_INTER_THREADS", params.get("inter_op_thread_count")),
        }
        threading = tf.config.threading
        setters = {
            "intra": threading.set_intra_op_parallelism_threads,
            "inter": threading.set_inter_op_parallelism_threads,
        }
        for pool, value in wanted.items():
            if value is None:
                continue
            count = int(value)
            if pool in _threads_set:
                if _threads_set[pool] != count:
                    log.warning(
                        "model %r asks for %d %s-op threads; TensorFlow's pool has %d "
                        "(one per process, set by the first model)",
                        config.name,
                        count,
                        pool,
                        _threads_set[pool],
                    )
                continue
            try:
                setters[pool](count)
                _threads_set[pool] = count
            except RuntimeError:  # TensorFlow already ran: the pools are fixed
                log.warning(
                    "model %r: TensorFlow already started; %s-op threads stay as they are",
                    config.name,
                    pool,
                )

    def load(self, config: ModelConfig, version_dir: Path, instance_index: int) -> Runtime:
        tf = import_tensorflow()
        path = self.model_file(config, version_dir)
        # nothing inside the SavedModel (variables, assets) may be a link out of it
        for item in path.rglob("*"):
            check_inside_repository(version_dir, item)
        self._threads(tf, config)
        if config.instance_kind == "KIND_GPU" and not tf.config.list_physical_devices("GPU"):
            log.warning("model %r asks for KIND_GPU, TensorFlow sees no GPU: CPU", config.name)
        tags = str(config.parameters.get("TF_GRAPH_TAG", "serve"))
        try:
            loaded = tf.saved_model.load(str(path), tags=[tags])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"TensorFlow cannot load {path.name}: {first}") from None
        signature = str(config.parameters.get("TF_SIGNATURE_DEF", DEFAULT_SIGNATURE))
        if signature not in loaded.signatures:
            raise ConfigError(
                f"the SavedModel has no signature {signature!r} "
                f"(it has {sorted(loaded.signatures)}); set parameters TF_SIGNATURE_DEF"
            )
        return TensorFlowRuntime(loaded, signature)
