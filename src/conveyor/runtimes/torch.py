"""PyTorch backend: TorchScript (`model.pt`, Triton's `pytorch_libtorch`) and
`torch.export` ExportedPrograms (`model.pt2`), run under `torch.inference_mode`.

Tensor names follow Triton's PyTorch backend. A TorchScript file carries no shapes and
no output names, so the config declares every input and output (name, data_type,
dims); an input is matched to `forward`'s argument of the same name, else by the index
in a `NAME__<i>` name (`INPUT__0`), else by its position in the config; an output by
the index in `NAME__<i>` (`OUTPUT__0`), else by its position. An ExportedProgram does
carry them: inputs are `forward`'s argument names, outputs `OUTPUT__<i>`, shapes and
dtypes from the export (a dimension exported as dynamic is -1), and the config may be
left out.

Threads (Triton's parameter names, or the lowercase ones the ONNX backend takes):
`INTRA_OP_THREAD_COUNT` is set in each instance's own thread before its first batch
(OpenMP takes its count per calling thread; torch's record of it is process-wide, so
torch models asking for different counts in one process may not each get theirs),
default: the cores shared out between the instances, as for ONNX Runtime.
`INTER_OP_THREAD_COUNT` sizes torch's one inter-op pool of the process (used by
TorchScript's `fork`): it can be set once, before any model runs, so the first model
that asks sets it for all.

Devices: `KIND_GPU` (or `KIND_AUTO` with CUDA present) runs on `cuda:<gpu>`; without
CUDA, a `KIND_GPU` model runs on the CPU, with a warning in the log.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequestError
from conveyor.repository.config import ConfigError, ModelConfig
from conveyor.runtimes.base import Backend, LoadedRuntime, Runtime, TensorSpec, config_specs

log = logging.getLogger("conveyor.runtimes.torch")

INSTALL = "pip install 'conveyor[torch]' (torch==2.13.0)"
_INDEXED = re.compile(r"^.+__(\d+)$")
_interop_set: list[int] = []  # the process-wide inter-op pool size, once set


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ConfigError(f"PyTorch is not installed: {INSTALL}") from None
    return torch


def _dtypes(torch: Any) -> dict[str, Any]:
    return {
        "BOOL": torch.bool,
        "UINT8": torch.uint8,
        "INT8": torch.int8,
        "INT16": torch.int16,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "FP16": torch.float16,
        "BF16": torch.bfloat16,
        "FP32": torch.float32,
        "FP64": torch.float64,
    }


def _param(config: ModelConfig, *names: str) -> str | None:
    for name in names:
        if name in config.parameters:
            return str(config.parameters[name])
    return None


def _flag(config: ModelConfig, name: str, default: bool) -> bool:
    value = _param(config, name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def choose_device(torch: Any, config: ModelConfig, instance_index: int) -> str:
    kind = config.instance_kind
    if kind in ("KIND_GPU", "KIND_AUTO") and torch.cuda.is_available():
        return f"cuda:{config.instance_gpu(instance_index) or 0}"
    if kind == "KIND_GPU":
        log.warning("model %r asks for KIND_GPU but CUDA is not available: CPU", config.name)
    return "cpu"


def _order(names: list[str], arguments: list[str], what: str) -> list[int]:
    """The position of each configured tensor among the model's arguments or results."""
    positions = []
    for i, name in enumerate(names):
        if name in arguments:
            positions.append(arguments.index(name))
        elif m := _INDEXED.match(name):
            positions.append(int(m.group(1)))
        else:
            positions.append(i)
    if sorted(positions) != list(range(len(names))):
        raise ConfigError(
            f"the config's {what} {names} do not map one to one onto the model's "
            f"{len(names)} positions (Triton's NAME__<index> convention)"
        )
    return positions


def _spec_of(torch: Any, name: str, value: Any) -> TensorSpec:
    """A tensor's spec from an export's fake tensor: symbolic dims are -1."""
    by_dtype = {v: k for k, v in _dtypes(torch).items()}
    if not isinstance(value, torch.Tensor) or value.dtype not in by_dtype:
        raise ConfigError(f"tensor {name!r} is not a tensor of a supported dtype ({value!r})")
    shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
    return TensorSpec(name, by_dtype[value.dtype], shape)


class TorchRuntime(LoadedRuntime):
    def __init__(
        self,
        module: Any,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        input_positions: list[int],
        output_positions: list[int],
        device: str,
        threads: int,
        inference_mode: bool,
    ) -> None:
        self._torch = torch = import_torch()
        self._module = module
        self._inputs, self._outputs = inputs, outputs
        self._in_pos = input_positions
        self._out_index = {t.name: p for t, p in zip(outputs, output_positions, strict=True)}
        self._device = torch.device(device)
        self._cuda = device.startswith("cuda")
        self._threads = threads
        self._threads_set = False
        self._mode = torch.inference_mode if inference_mode else torch.no_grad
        self._dtypes = _dtypes(torch)

    def _tensor(self, spec: TensorSpec, arr: np.ndarray) -> Any:
        torch = self._torch
        if spec.datatype == "BF16":  # numpy has no bfloat16: 16-bit patterns
            tensor = torch.from_numpy(np.ascontiguousarray(arr).view(np.int16)).view(torch.bfloat16)
        else:
            if not arr.flags.writeable or not arr.flags.c_contiguous:
                arr = np.array(arr)  # torch refuses read-only memory
            tensor = torch.from_numpy(arr)
        return tensor.to(self._device, non_blocking=True) if self._cuda else tensor

    def _array(self, name: str, value: Any) -> np.ndarray:
        torch = self._torch
        if not isinstance(value, torch.Tensor):
            raise InvalidRequestError(f"output '{name}': the model returned {type(value)}")
        value = value.detach()
        if self._cuda:
            value = value.cpu()
        if value.dtype == torch.bfloat16:
            return np.asarray(value.view(torch.int16).numpy())
        return np.asarray(value.numpy())

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        torch = self._torch
        if not self._threads_set:  # in this instance's own thread (see the module doc)
            torch.set_num_threads(self._threads)
            self._threads_set = True
        args: list[Any] = [None] * len(self._inputs)
        for spec, pos in zip(self._inputs, self._in_pos, strict=True):
            args[pos] = self._tensor(spec, inputs[spec.name])
        with self._mode():
            result = self._module(*args)
        if isinstance(result, torch.Tensor):
            result = (result,)
        elif isinstance(result, dict):
            result = tuple(result.values())
        elif not isinstance(result, list | tuple):
            raise InvalidRequestError(f"the model returned {type(result).__name__}, not tensors")
        if len(result) != len(self._outputs):
            raise InvalidRequestError(
                f"the model returned {len(result)} outputs, the config declares "
                f"{len(self._outputs)}"
            )
        return {name: self._array(name, result[self._out_index[name]]) for name in outputs}

    def close(self) -> None:
        del self._module
        if self._cuda:
            self._torch.cuda.empty_cache()


class TorchBackend(Backend):
    name = "pytorch"

    def threads(self, config: ModelConfig) -> int:
        value = _param(config, "INTRA_OP_THREAD_COUNT", "intra_op_thread_count")
        if value is None:
            return max(1, (os.cpu_count() or 1) // max(1, config.instance_count))
        return max(1, int(value))

    def _interop(self, torch: Any, config: ModelConfig) -> None:
        value = _param(config, "INTER_OP_THREAD_COUNT", "inter_op_thread_count")
        if value is None:
            return
        wanted = max(1, int(value))
        if _interop_set:
            if _interop_set[0] != wanted:
                log.warning(
                    "model %r asks for %d inter-op threads; torch's one pool has %d "
                    "(set once per process)",
                    config.name,
                    wanted,
                    _interop_set[0],
                )
            return
        try:
            torch.set_num_interop_threads(wanted)
        except RuntimeError as exc:  # torch already ran parallel work
            log.warning("model %r: inter-op threads not set: %s", config.name, exc)
        _interop_set.append(torch.get_num_interop_threads())

    def load(self, config: ModelConfig, version_dir: Path, instance_index: int) -> Runtime:
        torch = import_torch()
        path = self.model_file(config, version_dir)
        device = choose_device(torch, config, instance_index)
        self._interop(torch, config)
        if path.suffix == ".pt2":
            module, inputs, outputs, in_pos, out_pos = self._exported(torch, config, path, device)
        else:
            module, inputs, outputs, in_pos, out_pos = self._scripted(torch, config, path, device)
        if device != "cpu" or instance_index == 0:
            log.info("model %r instance %d on %s", config.name, instance_index, device)
        return TorchRuntime(
            module,
            inputs,
            outputs,
            in_pos,
            out_pos,
            device,
            self.threads(config),
            _flag(config, "INFERENCE_MODE", True),
        )

    def _scripted(
        self, torch: Any, config: ModelConfig, path: Path, device: str
    ) -> tuple[Any, list[TensorSpec], list[TensorSpec], list[int], list[int]]:
        if not config.inputs or not config.outputs:
            raise ConfigError(
                "a TorchScript model carries no tensor names or shapes: the config must "
                "declare every input and output (name, data_type, dims), e.g. INPUT__0 "
                "and OUTPUT__0 (or export the model with torch.export as model.pt2)"
            )
        try:
            with warnings.catch_warnings():  # torch 2.13 calls TorchScript deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location=device)
        except Exception as exc:
            raise ConfigError(f"{path.name} is not a TorchScript model: {exc}") from None
        module.eval()
        inputs, outputs = config_specs(config)
        schema = [a.name for a in module.forward.schema.arguments[1:]]  # [0] is self
        if len(schema) != len(inputs):
            raise ConfigError(
                f"the model's forward takes {len(schema)} inputs {schema}, the config "
                f"declares {len(inputs)}"
            )
        unsupported = [t.name for t in (*inputs, *outputs) if t.datatype not in _dtypes(torch)]
        if unsupported:
            raise ConfigError(f"tensors {unsupported}: PyTorch models take numeric tensors only")
        in_pos = _order([t.name for t in inputs], schema, "inputs")
        out_pos = _order([t.name for t in outputs], [], "outputs")
        return module, inputs, outputs, in_pos, out_pos

    def _exported(
        self, torch: Any, config: ModelConfig, path: Path, device: str
    ) -> tuple[Any, list[TensorSpec], list[TensorSpec], list[int], list[int]]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                program = torch.export.load(str(path))
        except Exception as exc:
            raise ConfigError(f"{path.name} is not a torch.export program: {exc}") from None
        nodes = {n.name: n for n in program.graph.nodes}
        signature = program.graph_signature
        inputs = [_spec_of(torch, n, nodes[n].meta.get("val")) for n in signature.user_inputs]
        output_node = next(n for n in program.graph.nodes if n.op == "output")
        results = output_node.args[0]
        user = list(results[-len(signature.user_outputs) :]) if signature.user_outputs else []
        outputs = [
            _spec_of(torch, f"OUTPUT__{i}", getattr(node, "meta", {}).get("val"))
            for i, node in enumerate(user)
        ]
        module = program.module()
        if device != "cpu":
            module = module.to(device)
        # a config may name the tensors its own way (Triton's NAME__<index>)
        inputs, in_pos = _renamed(config.inputs, inputs, "inputs")
        outputs, out_pos = _renamed(config.outputs, outputs, "outputs")
        return module, inputs, outputs, in_pos, out_pos


def _renamed(
    declared: list[Any], specs: list[TensorSpec], what: str
) -> tuple[list[TensorSpec], list[int]]:
    """The model's tensors under the names the config gives them, and their positions."""
    if not declared:
        return specs, list(range(len(specs)))
    positions = _order([t.name for t in declared], [t.name for t in specs], what)
    if len(declared) != len(specs):
        raise ConfigError(f"the config declares {len(declared)} {what}, the model has {len(specs)}")
    renamed = [
        TensorSpec(t.name, specs[p].datatype, specs[p].shape)
        for t, p in zip(declared, positions, strict=True)
    ]
    return renamed, positions
