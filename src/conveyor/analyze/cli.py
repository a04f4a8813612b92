"""`conveyor analyze`: a model's static figures (FLOPs, parameters, weight and
activation bytes, bytes moved, arithmetic intensity), and this machine's measured
ceilings (`--machine`).

MODEL is a file (`.onnx`; `.pt2` / `.pt` with the torch extra), a SavedModel directory
(the tensorflow extra), or a model directory of a repository (its newest version's).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from conveyor.analyze import machine, roofline
from conveyor.analyze.onnx_model import AnalysisError, analyze_onnx

MODEL_FILES = ("model.onnx", "model.pt2", "model.pt", "model.savedmodel")


def add_parser(sub: Any) -> None:
    a = sub.add_parser(
        "analyze",
        help="a model's FLOPs, parameters, memory and arithmetic intensity; the machine's peaks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("model", nargs="?", type=Path, help="model file or repository model dir")
    a.add_argument("--batch", type=int, default=1, help="the batch dimension (default 1)")
    a.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME=D1,D2,...",
        help="an input's whole shape, for dimensions other than the batch that are dynamic",
    )
    a.add_argument("--top", type=int, default=15, help="operators listed (default 15)")
    a.add_argument("--output", type=Path, help="write the whole analysis as JSON")
    a.add_argument(
        "--machine", action="store_true", help="this machine's measured FLOP/s and bandwidth"
    )
    a.add_argument("--refresh", action="store_true", help="measure the machine again")
    a.add_argument(
        "--bench",
        type=Path,
        action="append",
        default=[],
        metavar="RESULT.json",
        help="a `conveyor bench` result of this model: place it on the machine's roofline "
        "(ONNX models; repeatable)",
    )


def model_file(path: Path) -> Path:
    if path.is_file() or (path / "saved_model.pb").is_file():
        return path
    if path.is_dir():
        versions = sorted((int(p.name), p) for p in path.iterdir() if p.name.isdigit())
        for _, version in reversed(versions):
            for name in MODEL_FILES:
                if (version / name).exists():
                    return version / name
        for name in MODEL_FILES:
            if (path / name).exists():
                return path / name
    raise AnalysisError(f"{path}: no model file ({', '.join(MODEL_FILES)}) found")


def _shapes(items: list[str]) -> dict[str, list[int]]:
    out = {}
    for item in items:
        name, _, dims = item.partition("=")
        try:
            out[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            raise AnalysisError(f"--shape {item!r}: expected NAME=D1,D2,...") from None
    return out


def analyze_torch(path: Path, batch: int, shapes: dict[str, list[int]]) -> dict[str, Any]:
    """torch's own FLOP counter (`FlopCounterMode`, matmuls and convolutions) over one
    forward pass; parameters and weight bytes from the module's state."""
    import warnings

    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        raise AnalysisError("PyTorch is not installed: pip install 'conveyor[torch]'") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if path.suffix == ".pt2":
            program = torch.export.load(str(path))
            module = program.module()
            nodes = {n.name: n for n in program.graph.nodes}
            names = list(program.graph_signature.user_inputs)
            specs = [nodes[n].meta["val"] for n in names]
            dims = {
                n: shapes.get(n, [batch if not isinstance(d, int) else d for d in s.shape])
                for n, s in zip(names, specs, strict=True)
            }
            args = [torch.zeros(dims[n], dtype=s.dtype) for n, s in zip(names, specs, strict=True)]
        else:
            module = torch.jit.load(str(path))
            if not shapes:
                raise AnalysisError(
                    "a TorchScript file has no input shapes: give each with --shape NAME=..."
                )
            dims = shapes
            args = [torch.zeros(d) for d in shapes.values()]
    state = module.state_dict()
    params = sum(t.numel() for t in state.values())
    weight_bytes = sum(t.numel() * t.element_size() for t in state.values())
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(*args)
    per_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    doc = _counted(path, "torch", batch, dims, int(counter.get_total_flops()), params, weight_bytes)
    doc["by_op_type"] = {k: {"flops": v} for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}
    doc["counted"] = "torch's FlopCounterMode: matrix multiplies and convolutions only"
    return doc


def _counted(
    path: Path,
    fmt: str,
    batch: int,
    dims: dict[str, Any],
    flops: int,
    params: int,
    weight_bytes: int,
) -> dict[str, Any]:
    """The analysis document of a framework's own FLOP counter (no bytes moved)."""
    return {
        "schema": "conveyor.analyze/1",
        "model": str(path),
        "format": fmt,
        "batch": batch,
        "input_shapes": dims,
        "per_batch": {"flops": flops, "macs": flops // 2},
        "per_item": {"flops": flops / batch, "macs": flops / 2 / batch},
        "params": params,
        "weight_bytes": weight_bytes,
        "by_op_type": {},
    }


def analyze_tensorflow(path: Path, batch: int, shapes: dict[str, list[int]]) -> dict[str, Any]:
    """TensorFlow's own profiler (`float_operation`: every op with registered FLOP
    statistics) over the serving signature, its variables frozen and its dynamic
    dimensions fixed; parameters and weight bytes from the SavedModel's variables."""
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )
    except ImportError:
        raise AnalysisError(
            "TensorFlow is not installed: pip install 'conveyor[tensorflow]'"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = tf.saved_model.load(str(path))
        function = loaded.signatures["serving_default"]
        _, inputs = function.structured_input_signature
        dims = {
            name: shapes.get(name, [batch if d is None else d for d in spec.shape])
            for name, spec in inputs.items()
        }
        if any(d is None for v in dims.values() for d in v):
            raise AnalysisError(f"dynamic dimensions in {dims}: give them with --shape")
        specs = {name: tf.TensorSpec(dims[name], spec.dtype) for name, spec in inputs.items()}

        def serve(**feed: Any) -> Any:
            return function(**feed)

        concrete = tf.function(serve, autograph=False).get_concrete_function(**specs)
        frozen = convert_variables_to_constants_v2(concrete)
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        profile = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
    variables = list(getattr(loaded, "variables", []))
    params = sum(int(v.shape.num_elements()) for v in variables)
    weight_bytes = sum(int(v.shape.num_elements()) * v.dtype.size for v in variables)
    doc = _counted(
        path, "tensorflow", batch, dims, int(profile.total_float_ops), params, weight_bytes
    )
    doc["counted"] = "TensorFlow's profiler (float_operation); MACs taken as half the FLOPs"
    return doc


def _num(x: float, unit: str = "") -> str:
    if x == 0:
        return f"0{unit}"
    exp = min(4, max(0, int(math.log10(abs(x)) // 3)))
    return f"{x / 1000**exp:.3g}{' kMGT'[exp].strip()}{unit}"


def show(doc: dict[str, Any], top: int) -> None:
    print(f"{doc['model']}  ({doc['format']}, batch {doc['batch']}, inputs {doc['input_shapes']})")
    per_batch, per_item = doc["per_batch"], doc["per_item"]
    rows = [
        ("FLOPs per item", _num(per_item["flops"])),
        ("FLOPs per batch", _num(per_batch["flops"])),
        ("MACs per item", _num(per_item["macs"])),
        ("parameters", _num(doc["params"])),
        ("weight bytes", _num(doc["weight_bytes"], "B")),
    ]
    if "bytes_moved" in per_batch:
        rows += [
            ("bytes moved per batch", _num(per_batch["bytes_moved"], "B")),
            ("peak activations", _num(per_batch["peak_activation_bytes"], "B")),
            ("arithmetic intensity", f"{doc['arithmetic_intensity']:.1f} FLOP/B"),
        ]
    for label, value in rows:
        print(f"  {label:<24} {value}")
    print(f"\n  {'operator':<28} {'count':>6} {'FLOPs':>10} {'share':>7} {'bytes':>9}")
    total = max(1, per_batch["flops"])
    for op, entry in list(doc["by_op_type"].items())[:top]:
        print(
            f"  {op:<28} {entry.get('count', ''):>6} {_num(entry['flops']):>10} "
            f"{entry['flops'] / total:>7.1%} {_num(entry.get('bytes', 0), 'B'):>9}"
        )
    if "counted" in doc:
        print(f"\n  counted: {doc['counted']}")


def show_machine(doc: dict[str, Any]) -> None:
    ident = doc["identity"]
    print(
        f"{ident['cpu']}, {ident['cores']} cores ({'cached' if doc['cached'] else 'measured'}"
        f" {doc['measured_at']})"
    )
    print(f"  FP32 matmul, 1 core      {doc['fp32_gflops_1_core']:8.1f} GFLOP/s  (numpy)")
    print(f"  FP32 matmul, all cores   {doc['fp32_gflops_all_cores']:8.1f} GFLOP/s  (numpy)")
    for key, label in (
        ("cpu_fp32_gflops", "FP32 matmul, torch"),
        ("cpu_bf16_gflops", "BF16 matmul, torch"),
        ("cuda_fp32_gflops", "FP32 matmul, CUDA"),
        ("cuda_bf16_gflops", "BF16 matmul, CUDA"),
        ("cpu_int8_gops", "INT8 matmul, torch (GOP/s)"),
        ("cuda_int8_gops", "INT8 matmul, CUDA (GOP/s)"),
    ):
        if key in doc:
            print(f"  {label:<24} {doc[key]:8.1f} GFLOP/s")
    bw = doc["bandwidth_gbs"]
    print(f"  bandwidth, triad         {bw['triad']:8.1f} GB/s")
    print(f"  bandwidth, copy          {bw['copy']:8.1f} GB/s")
    if "int8" in doc:
        print(f"  INT8: {doc['int8']}")


def roofline_of(doc: dict[str, Any], results: list[Path], refresh: bool) -> list[dict[str, Any]]:
    if "arithmetic_intensity" not in doc:
        raise AnalysisError("the roofline needs bytes moved: analyze the model's ONNX file")
    ceilings = machine.peaks(refresh=refresh)
    print(
        f"\n  roofline: peak {ceilings['peak_fp32_gflops']:.0f} GFLOP/s, "
        f"{ceilings['peak_bandwidth_gbs']:.1f} GB/s (ridge "
        f"{ceilings['peak_fp32_gflops'] / ceilings['peak_bandwidth_gbs']:.1f} FLOP/B)"
    )
    points = []
    for path in results:
        try:
            result = json.loads(path.read_text())
            point = roofline.place(doc, ceilings, roofline.items_per_s(result))
        except (OSError, ValueError, KeyError) as exc:
            raise AnalysisError(f"{path}: not a bench result ({exc})") from None
        point["result"] = str(path)
        points.append(point)
        print(
            f"  {path.name}: {point['items_per_s']:.1f} items/s = "
            f"{point['achieved_gflops']:.2f} GFLOP/s, {point['share_of_roof']:.1%} of its roof "
            f"({point['roof_gflops']:.0f} GFLOP/s): {point['bound']}"
        )
    return points


def run(args: argparse.Namespace) -> int:
    try:
        if args.machine:
            doc = machine.peaks(refresh=args.refresh)
            show_machine(doc)
        elif args.model is None:
            print("conveyor analyze: give a MODEL, or --machine", file=sys.stderr)
            return 2
        else:
            path = model_file(args.model)
            shapes = _shapes(args.shape)
            if path.suffix == ".onnx":
                doc = analyze_onnx(path, args.batch, shapes).to_json()
            elif (path / "saved_model.pb").is_file():
                doc = analyze_tensorflow(path, args.batch, shapes)
            else:
                doc = analyze_torch(path, args.batch, shapes)
            show(doc, args.top)
            if args.bench:
                doc["roofline"] = roofline_of(doc, args.bench, args.refresh)
                ceilings = machine.peaks()
                doc["machine"] = {
                    k: ceilings[k]
                    for k in ("identity", "peak_fp32_gflops", "peak_bandwidth_gbs")
                    if k in ceilings
                }
    except AnalysisError as exc:
        print(f"conveyor analyze: {exc}", file=sys.stderr)
        return 2
    if args.output:
        args.output.write_text(json.dumps(doc, indent=2))
        print(f"\nwritten to {args.output}")
    return 0
