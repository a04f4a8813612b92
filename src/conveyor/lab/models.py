"""The lab's models: one function in every format its peers read, with the same weights.

A lab model is a name, one input `x` (FP32, batch dimension first) and one output, and
a file per format: `onnx` (ONNX Runtime, OpenVINO, and the peers that run ONNX Runtime
themselves), `torchscript` (PyTorch, TorchServe) and `savedmodel` (TensorFlow). Built
once under the cache, with fixed seeds; a format whose framework is not installed is
missing, and the peers that need it say so.

Built in: `tiny` (y = x·W, 256x256, the tests' model), `small_cnn`, `resnet50` and
`mobilenet_v2` (`conveyor.demo.frameworks`). A path to an `.onnx` file is a model too
(ONNX only). Every model has an `empty` twin for seed 004's RPC baseline: the same
input, an output of the same size taken from the input itself (a slice: no compute),
so what it costs is transport and the server's own work.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from conveyor.lab import BUILT_IN

FORMATS = ("onnx", "torchscript", "savedmodel")
FILES = {"onnx": "model.onnx", "torchscript": "model.pt", "savedmodel": "model.savedmodel"}


@dataclass
class LabModel:
    name: str
    item_shape: tuple[int, ...]  # one input item, without the batch dimension
    output_size: int  # elements of one output item
    files: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # format -> why it is not built
    input_name: str = "x"
    output_name: str = "y"

    def sample(self, batch: int, seed: int = 1) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, *self.item_shape)).astype(np.float32)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The output computed here, in-process, by ONNX Runtime: what every peer must
        return for `x`."""
        import onnxruntime as ort

        sess = ort.InferenceSession(str(self.files["onnx"]), providers=["CPUExecutionProvider"])
        return np.asarray(sess.run(None, {self.input_name: x})[0])


def resolve(spec: str, cache: Path) -> tuple[LabModel, LabModel]:
    """The model named by `spec` (built in, or an .onnx path) and its empty twin."""
    if spec in BUILT_IN:
        return _built_in(spec, cache), _empty_of(spec, cache)
    path = Path(spec)
    if path.suffix != ".onnx" or not path.is_file():
        raise ValueError(
            f"unknown model {spec!r}: a built-in ({', '.join(BUILT_IN)}) or an .onnx file"
        )
    return _onnx_file(path, cache)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in value.type.tensor_type.shape.dim
    ]


def _onnx_file(path: Path, cache: Path) -> tuple[LabModel, LabModel]:
    proto = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise ValueError(f"{path}: the lab takes models of one input and one output")
    inp, out = inputs[0], proto.graph.output[0]
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"{path}: the lab takes an FP32 input")
    dims, odims = _dims(inp), _dims(out)
    if any(not isinstance(d, int) or d <= 0 for d in dims[1:] + odims[1:]):
        raise ValueError(f"{path}: only the batch dimension may be dynamic, got {dims}")
    item = tuple(int(d) for d in dims[1:])
    size = int(np.prod([int(d) for d in odims[1:]]))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    root = cache / "models" / f"{path.stem}-{digest}"
    root.mkdir(parents=True, exist_ok=True)
    target = root / "model.onnx"
    if not target.exists():
        shutil.copyfile(path, target)
    why = "the model was given as ONNX; this peer needs another format"
    model = LabModel(
        path.stem,
        item,
        size,
        {"onnx": target},
        {"torchscript": why, "savedmodel": why},
        inp.name,
        out.name,
    )
    model.input_name = inp.name
    empty = _build(f"{path.stem}-empty", root / "empty", item, size, _empty_builders(item, size))
    return model, empty


def _built_in(name: str, cache: Path) -> LabModel:
    root = cache / "models" / name
    if name == "tiny":
        w = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32) / 16
        return _build(name, root, (256,), 256, _tiny_builders(w))
    from conveyor.demo import frameworks

    net = frameworks.NETWORKS[name]()
    item = (3, net.size, net.size)
    model = _build(name, root, item, net.classes, _network_builders(net))
    model.output_name = "logits"
    return model


def _empty_of(name: str, cache: Path) -> LabModel:
    item: tuple[int, ...] = (256,)
    size = 256
    if name != "tiny":
        from conveyor.demo import frameworks

        net = frameworks.NETWORKS[name]()
        item, size = (3, net.size, net.size), net.classes
    return _build(
        f"{name}-empty", cache / "models" / f"{name}-empty", item, size, _empty_builders(item, size)
    )


Builders = dict[str, "object"]


def _build(
    name: str, root: Path, item: tuple[int, ...], size: int, builders: dict[str, object]
) -> LabModel:
    model = LabModel(name, item, size)
    root.mkdir(parents=True, exist_ok=True)
    for fmt, build in builders.items():
        path = root / FILES[fmt]
        done = root / f".{fmt}-done"
        if done.exists():
            model.files[fmt] = path
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if path.is_dir():
                    shutil.rmtree(path)
                build(path)  # type: ignore[operator]
        except ImportError as exc:
            extra = {"torchscript": "torch", "savedmodel": "tensorflow"}[fmt]
            model.missing[fmt] = (
                f"{exc.name or exc} is not installed: pip install 'conveyor[{extra}]'"
            )
            continue
        done.write_text("")
        model.files[fmt] = path
    return model


# ----- tiny: y = x·W ------------------------------------------------------------------


def _tiny_builders(w: np.ndarray) -> dict[str, object]:
    def onnx_file(path: Path) -> None:
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["y"])],
            "tiny",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 256])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 256])],
            [numpy_helper.from_array(w, "W")],
        )
        _save_onnx(graph, path)

    def torchscript(path: Path) -> None:
        import torch

        class Tiny(torch.nn.Module):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.register_buffer("w", torch.from_numpy(w.copy()))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x @ self.w

        torch.jit.script(Tiny().eval()).save(str(path))

    def savedmodel(path: Path) -> None:
        import tensorflow as tf

        class Tiny(tf.Module):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.w = tf.constant(w)

            @tf.function(  # type: ignore[untyped-decorator]
                input_signature=[tf.TensorSpec([None, 256], tf.float32, name="x")]
            )
            def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
                return {"output_0": tf.matmul(x, self.w)}

        module = Tiny()
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})

    return {"onnx": onnx_file, "torchscript": torchscript, "savedmodel": savedmodel}


# ----- empty: the output is a slice of the input ---------------------------------------


def _empty_builders(item: tuple[int, ...], size: int) -> dict[str, object]:
    flat = int(np.prod(item))
    if size > flat:
        raise ValueError(f"an output of {size} elements cannot be cut from an input of {flat}")

    def onnx_file(path: Path) -> None:
        graph = helper.make_graph(
            [
                helper.make_node("Flatten", ["x"], ["flat"], axis=1),
                helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["y"]),
            ],
            "empty",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *item])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", size])],
            [
                numpy_helper.from_array(np.array([0], np.int64), "starts"),
                numpy_helper.from_array(np.array([size], np.int64), "ends"),
                numpy_helper.from_array(np.array([1], np.int64), "axes"),
            ],
        )
        _save_onnx(graph, path)

    def torchscript(path: Path) -> None:
        import torch

        class Empty(torch.nn.Module):  # type: ignore[misc]
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x.flatten(1)[:, :size].contiguous()

        module = Empty().eval()
        torch.jit.trace(module, torch.zeros((1, *item))).save(str(path))

    def savedmodel(path: Path) -> None:
        import tensorflow as tf

        class Empty(tf.Module):  # type: ignore[misc]
            @tf.function(  # type: ignore[untyped-decorator]
                input_signature=[tf.TensorSpec([None, *item], tf.float32, name="x")]
            )
            def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
                return {"output_0": tf.reshape(x, [tf.shape(x)[0], -1])[:, :size]}

        module = Empty()
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})

    return {"onnx": onnx_file, "torchscript": torchscript, "savedmodel": savedmodel}


# ----- the demo networks ----------------------------------------------------------------


def _network_builders(net: object) -> dict[str, object]:
    from conveyor.demo import frameworks

    return {
        "onnx": lambda path: frameworks.build_onnx(net, path),  # type: ignore[arg-type]
        "torchscript": lambda path: frameworks.build_torchscript(net, path),  # type: ignore[arg-type]
        "savedmodel": lambda path: frameworks.build_savedmodel(net, path),  # type: ignore[arg-type]
    }


def _save_onnx(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
