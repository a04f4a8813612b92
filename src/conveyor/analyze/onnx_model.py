"""Static analysis of an ONNX model: FLOPs per operator and in all, parameters, weight
bytes, bytes moved, peak activation memory, arithmetic intensity.

Shapes come from ONNX shape inference once every dynamic dimension of the inputs is
fixed: the first (batch) dimension by `batch`, the others by `shapes` (a dimension left
dynamic is an error that names it).

How each figure is counted (the conventions of the papers' tables):
- FLOPs = 2 x MACs for Conv, ConvTranspose, Gemm and MatMul (bias additions are not
  counted); other operators count their elementwise work: one FLOP per output element
  for arithmetic and activations (Add, Relu, Erf...), the window for pooling, the input
  for reductions, and estimates for Softmax (5 per element), LayerNormalization (8) and
  BatchNormalization (2). Shape and data-movement operators (Reshape, Transpose, Gather,
  Concat...) count 0 FLOPs.
- Bytes moved: what each operator reads (inputs, weights) and writes (outputs) when run
  one after the other without fusion, in the tensors' own dtypes: an upper bound on
  memory traffic that a runtime's fusion and caches lower.
- Peak activation memory: the largest sum of live intermediate tensors, executing the
  nodes in graph order and freeing each tensor after its last reader (weights excluded).
- Arithmetic intensity = FLOPs / bytes moved.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

MATMUL_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Relu", "LeakyRelu", "PRelu", "Sigmoid",
    "Tanh", "Erf", "Exp", "Log", "Abs", "Neg", "Clip", "Max", "Min", "HardSigmoid",
    "HardSwish", "Gelu", "Elu", "Selu", "Softplus", "Mish", "Reciprocal", "Where",
    "Equal", "Greater", "Less", "Not", "And", "Or", "Cast", "Floor", "Ceil", "Round",
}  # fmt: skip
PER_ELEMENT = {"Softmax": 5, "LogSoftmax": 5, "LayerNormalization": 8, "BatchNormalization": 2}
REDUCTIONS = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "GlobalAveragePool"}
POOLS = {"MaxPool", "AveragePool"}


class AnalysisError(ValueError):
    pass


@dataclass
class OpRow:
    name: str
    op: str
    flops: int
    macs: int
    params: int
    bytes_read: int
    bytes_written: int
    output_shape: list[int]


@dataclass
class Analysis:
    model: str
    batch: int
    input_shapes: dict[str, list[int]]
    flops: int
    macs: int
    params: int
    weight_bytes: int
    bytes_moved: int
    peak_activation_bytes: int
    ops: list[OpRow] = field(default_factory=list)

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes_moved if self.bytes_moved else 0.0

    def by_op_type(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for row in self.ops:
            entry = out.setdefault(row.op, {"count": 0, "flops": 0, "bytes": 0})
            entry["count"] += 1
            entry["flops"] += row.flops
            entry["bytes"] += row.bytes_read + row.bytes_written
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["flops"]))

    def to_json(self) -> dict[str, Any]:
        per = max(1, self.batch)
        return {
            "schema": "conveyor.analyze/1",
            "model": self.model,
            "format": "onnx",
            "batch": self.batch,
            "input_shapes": self.input_shapes,
            "per_batch": {
                "flops": self.flops,
                "macs": self.macs,
                "bytes_moved": self.bytes_moved,
                "peak_activation_bytes": self.peak_activation_bytes,
            },
            "per_item": {
                "flops": self.flops / per,
                "macs": self.macs / per,
                "bytes_moved": self.bytes_moved / per,
            },
            "params": self.params,
            "weight_bytes": self.weight_bytes,
            "arithmetic_intensity": self.intensity,
            "by_op_type": self.by_op_type(),
            "ops": [asdict(r) for r in self.ops],
        }


def _itemsize(elem_type: int) -> int:
    if elem_type == onnx.TensorProto.STRING:
        return 0
    return int(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)


def _fix_inputs(
    model: onnx.ModelProto, batch: int, shapes: dict[str, list[int]]
) -> tuple[dict[str, list[int]], bool]:
    """Every input's dims fixed; whether a dynamic batch dimension was set to `batch`."""
    weights = {i.name for i in model.graph.initializer}
    fixed: dict[str, list[int]] = {}
    batched = False
    for inp in model.graph.input:
        if inp.name in weights:
            continue
        dims = inp.type.tensor_type.shape.dim
        if inp.name in shapes:
            wanted = shapes[inp.name]
            if len(wanted) != len(dims):
                raise AnalysisError(
                    f"--shape {inp.name}: {len(wanted)} dims given, the input has {len(dims)}"
                )
        else:
            wanted = []
            for i, d in enumerate(dims):
                if d.HasField("dim_value"):
                    wanted.append(d.dim_value)
                elif i == 0:
                    wanted.append(batch)
                    batched = True
                else:
                    raise AnalysisError(
                        f"input '{inp.name}' dimension {i} ({d.dim_param or '?'}) is dynamic: "
                        f"give it with --shape {inp.name}=..."
                    )
        for d, value in zip(dims, wanted, strict=True):
            d.Clear()
            d.dim_value = value
        fixed[inp.name] = list(wanted)
    return fixed, batched


def analyze_onnx(
    path: Path, batch: int = 1, shapes: dict[str, list[int]] | None = None
) -> Analysis:
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise AnalysisError(f"{path} is not an ONNX model: {exc}") from None
    fixed, batched = _fix_inputs(model, batch, shapes or {})
    batch = batch if batched else 1  # a static model's per-item figures are its own
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise AnalysisError(f"shape inference failed: {exc}") from None
    graph = inferred.graph
    inits = {t.name: t for t in graph.initializer}
    info: dict[str, tuple[list[int], int]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = vi.type.tensor_type
        if tensor_type.HasField("shape"):
            dims = [d.dim_value for d in tensor_type.shape.dim]
            info[vi.name] = (dims, tensor_type.elem_type)
    for init in graph.initializer:
        info[init.name] = (list(init.dims), init.data_type)
    constants: set[str] = set(inits)
    for node in graph.node:
        if node.op_type == "Constant":
            value = numpy_helper.to_array(node.attribute[0].t) if node.attribute else None
            if value is not None:
                info[node.output[0]] = (list(value.shape), node.attribute[0].t.data_type)
            constants.update(node.output)

    def shape(name: str) -> list[int]:
        if name not in info:
            raise AnalysisError(f"no shape for tensor '{name}' after shape inference")
        return info[name][0]

    def nbytes(name: str) -> int:
        if not name or name not in info:
            return 0
        dims, elem = info[name]
        return math.prod(dims) * _itemsize(elem)

    rows: list[OpRow] = []
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        outs = [o for o in node.output if o]
        out_shape = shape(outs[0]) if outs else []
        out_elems = math.prod(out_shape) if outs else 0
        macs = 0
        flops = 0
        op = node.op_type
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if op == "Conv":
            w = shape(node.input[1])
            macs = out_elems * math.prod(w[1:])  # Cout/g x (Cin/g x kh x kw) per position
        elif op == "ConvTranspose":
            w = shape(node.input[1])  # [Cin, Cout/group, kh, kw]
            macs = math.prod(shape(node.input[0])) * w[1] * math.prod(w[2:])
        elif op == "Gemm":
            a = shape(node.input[0])
            k = a[0] if attrs.get("transA", 0) else a[-1]
            macs = out_elems * k
        elif op == "MatMul":
            a = shape(node.input[0])
            macs = out_elems * a[-1]
        elif op in ELEMENTWISE:
            flops = out_elems
        elif op in PER_ELEMENT:
            flops = PER_ELEMENT[op] * out_elems
        elif op in REDUCTIONS:
            flops = math.prod(shape(node.input[0]))
        elif op in POOLS:
            flops = out_elems * math.prod(attrs.get("kernel_shape", [1]))
        if op in MATMUL_OPS:
            flops = 2 * macs
        params = sum(math.prod(shape(i)) for i in node.input if i in constants)
        rows.append(
            OpRow(
                name=node.name or f"{op}_{len(rows)}",
                op=op,
                flops=flops,
                macs=macs,
                params=params,
                bytes_read=sum(nbytes(i) for i in node.input),
                bytes_written=sum(nbytes(o) for o in outs),
                output_shape=out_shape,
            )
        )
    weight_bytes = sum(nbytes(t) for t in inits)
    return Analysis(
        model=str(path),
        batch=batch,
        input_shapes=fixed,
        flops=sum(r.flops for r in rows),
        macs=sum(r.macs for r in rows),
        params=sum(math.prod(t.dims) for t in graph.initializer),
        weight_bytes=weight_bytes,
        bytes_moved=sum(r.bytes_read + r.bytes_written for r in rows),
        peak_activation_bytes=_peak_activations(graph, nbytes, constants),
        ops=rows,
    )


def _peak_activations(graph: onnx.GraphProto, nbytes: Any, constants: set[str]) -> int:
    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = i
    outputs = {o.name for o in graph.output}
    live: dict[str, int] = {i.name: nbytes(i.name) for i in graph.input if i.name not in constants}
    peak = sum(live.values())
    for i, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if out:
                live[out] = nbytes(out)
        peak = max(peak, sum(live.values()))
        for name in [n for n in live if last_use.get(n, -1) <= i and n not in outputs]:
            del live[name]
    return peak
