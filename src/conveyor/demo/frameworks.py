"""One network, the same weights, in every format Conveyor serves: ONNX, TorchScript,
a `torch.export` program, a Keras 3 SavedModel, and OpenVINO IR.

A network is a list of nodes (convolution with its BatchNorm folded in, addition,
pooling, the classifier) over named tensors, with fixed-seed numpy weights. Each
format's builder walks the same list, so every runtime computes the same function and
served outputs can be compared across runtimes (they agree to float32 rounding).
Every model takes `x` FP32 [batch, 3, H, W] (NCHW; the Keras model transposes
inside) and returns 1000 (or 10) logits; the batch dimension is dynamic.

- `small_cnn`: 3 convolutions and a residual block on 3x32x32, 10 classes (the tests);
- `resnet50`: ResNet-50 v1.5 (bottlenecks [3, 4, 6, 3]) on 3x224x224;
- `mobilenet_v2`: MobileNetV2 (inverted residuals, depthwise convolutions, ReLU6).

torch, tensorflow and openvino are imported only by their own builders (extras).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass
class Node:
    op: str  # conv | add | maxpool | gap | linear
    inputs: list[str]
    output: str
    weight: np.ndarray | None = None  # conv OIHW (I = in/groups); linear [out, in]
    bias: np.ndarray | None = None
    stride: int = 1
    pad: int = 0
    groups: int = 1
    act: str = ""  # "" | relu | relu6


@dataclass
class Network:
    name: str
    size: int  # input height = width
    classes: int
    nodes: list[Node] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.nodes[-1].output

    def sample(self, batch: int, seed: int = 1) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, 3, self.size, self.size)).astype(np.float32)


class _Builder:
    def __init__(self, name: str, size: int, classes: int, seed: int) -> None:
        self.net = Network(name, size, classes)
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        act: str = "relu",
        gain: float = 1.0,
    ) -> str:
        fan_in = cin // groups * k * k
        w = self.rng.standard_normal((cout, cin // groups, k, k)) * gain * np.sqrt(2.0 / fan_in)
        b = self.rng.standard_normal(cout) * 0.05
        out = self._name("conv")
        self.net.nodes.append(
            Node("conv", [x], out, w.astype(np.float32), b.astype(np.float32), stride, k // 2)
        )
        self.net.nodes[-1].groups, self.net.nodes[-1].act = groups, act
        return out

    def add(self, a: str, b: str, act: str = "relu") -> str:
        out = self._name("add")
        self.net.nodes.append(Node("add", [a, b], out, act=act))
        return out

    def maxpool(self, x: str) -> str:
        out = self._name("pool")
        self.net.nodes.append(Node("maxpool", [x], out, stride=2, pad=1))
        return out

    def head(self, x: str, features: int) -> Network:
        pooled = self._name("gap")
        self.net.nodes.append(Node("gap", [x], pooled))
        classes = self.net.classes
        w = self.rng.standard_normal((classes, features)) / np.sqrt(features)
        b = self.rng.standard_normal(classes) * 0.05
        self.net.nodes.append(
            Node("linear", [pooled], "logits", w.astype(np.float32), b.astype(np.float32))
        )
        return self.net


def small_cnn(seed: int = 0) -> Network:
    b = _Builder("small_cnn", 32, 10, seed)
    x = b.conv("x", 3, 8, 3)
    x = b.conv(x, 8, 16, 3, stride=2)
    y = b.conv(x, 16, 16, 3)
    y = b.conv(y, 16, 16, 3, act="", gain=0.5)
    x = b.add(x, y)
    x = b.conv(x, 16, 16, 1, groups=16)  # depthwise, as in MobileNet
    return b.head(x, 16)


def resnet50(seed: int = 0) -> Network:
    b = _Builder("resnet50", 224, 1000, seed)
    x = b.maxpool(b.conv("x", 3, 64, 7, stride=2))
    cin = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True)):
        for i in range(blocks):
            stride = 2 if i == 0 and stage > 0 else 1
            y = b.conv(x, cin, width, 1)
            y = b.conv(y, width, width, 3, stride=stride)  # v1.5: the stride on the 3x3
            y = b.conv(y, width, width * 4, 1, act="", gain=0.2)
            shortcut = x
            if i == 0:
                shortcut = b.conv(x, cin, width * 4, 1, stride=stride, act="")
            x = b.add(shortcut, y)
            cin = width * 4
    return b.head(x, cin)


def mobilenet_v2(seed: int = 0) -> Network:
    b = _Builder("mobilenet_v2", 224, 1000, seed)
    x = b.conv("x", 3, 32, 3, stride=2, act="relu6")
    cin = 32
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2)]
    settings += [(6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    for expand, cout, repeats, first_stride in settings:
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            hidden = cin * expand
            y = x if expand == 1 else b.conv(x, cin, hidden, 1, act="relu6")
            y = b.conv(y, hidden, hidden, 3, stride=stride, groups=hidden, act="relu6")
            y = b.conv(y, hidden, cout, 1, act="", gain=0.5)
            x = b.add(x, y, act="") if stride == 1 and cin == cout else y
            cin = cout
    x = b.conv(x, cin, 1280, 1, act="relu6")
    return b.head(x, 1280)


NETWORKS = {"small_cnn": small_cnn, "resnet50": resnet50, "mobilenet_v2": mobilenet_v2}


# --- numpy: the reference ---------------------------------------------------------


def reference(net: Network, x: np.ndarray) -> np.ndarray:
    """The network in float64 numpy: what every runtime's output is compared with."""
    values: dict[str, np.ndarray] = {"x": x.astype(np.float64)}
    for n in net.nodes:
        a = values[n.inputs[0]]
        if n.op == "conv":
            assert n.weight is not None and n.bias is not None
            out = _conv(a, n.weight.astype(np.float64), n.stride, n.pad, n.groups)
            out += n.bias.astype(np.float64)[None, :, None, None]
        elif n.op == "add":
            out = a + values[n.inputs[1]]
        elif n.op == "maxpool":
            p = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
            h = (a.shape[2] + 2 - 3) // 2 + 1
            w = (a.shape[3] + 2 - 3) // 2 + 1
            out = np.full((a.shape[0], a.shape[1], h, w), -np.inf)
            for i in range(3):
                for j in range(3):
                    out = np.maximum(out, p[:, :, i : i + 2 * h : 2, j : j + 2 * w : 2])
        elif n.op == "gap":
            out = a.mean(axis=(2, 3))
        else:
            assert n.weight is not None and n.bias is not None
            out = a @ n.weight.T.astype(np.float64) + n.bias
        if n.act:
            out = np.maximum(out, 0)
            if n.act == "relu6":
                out = np.minimum(out, 6)
        values[n.output] = out
    return values[net.output]


def _conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int, groups: int) -> np.ndarray:
    n, _, h, wd = x.shape
    cout, cin_g, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, cout, oh, ow))
    per_group = cout // groups
    for g in range(groups):
        xs = xp[:, g * cin_g : (g + 1) * cin_g]
        ws = w[g * per_group : (g + 1) * per_group]
        for i in range(k):
            for j in range(k):
                patch = xs[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
                out[:, g * per_group : (g + 1) * per_group] += np.einsum(
                    "nchw,oc->nohw", patch, ws[:, :, i, j]
                )
    return out


# --- ONNX ------------------------------------------------------------------------


def build_onnx(net: Network, path: Path) -> Path:
    nodes, inits = [], []
    if any(n.act == "relu6" for n in net.nodes):
        inits += [
            numpy_helper.from_array(np.array(6.0, np.float32), "six"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ]
    for n in net.nodes:
        out = n.output + "_pre" if n.act else n.output
        if n.op == "conv":
            assert n.weight is not None and n.bias is not None
            inits += [
                numpy_helper.from_array(n.weight, n.output + "_w"),
                numpy_helper.from_array(n.bias, n.output + "_b"),
            ]
            k = n.weight.shape[2]
            nodes.append(
                helper.make_node(
                    "Conv",
                    [n.inputs[0], n.output + "_w", n.output + "_b"],
                    [out],
                    kernel_shape=[k, k],
                    strides=[n.stride, n.stride],
                    pads=[n.pad] * 4,
                    group=n.groups,
                )
            )
        elif n.op == "add":
            nodes.append(helper.make_node("Add", n.inputs, [out]))
        elif n.op == "maxpool":
            nodes.append(
                helper.make_node(
                    "MaxPool", n.inputs, [out], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
                )
            )
        elif n.op == "gap":
            nodes.append(helper.make_node("GlobalAveragePool", n.inputs, [n.output + "_4d"]))
            nodes.append(helper.make_node("Flatten", [n.output + "_4d"], [out], axis=1))
        else:
            assert n.weight is not None and n.bias is not None
            inits += [
                numpy_helper.from_array(n.weight, n.output + "_w"),
                numpy_helper.from_array(n.bias, n.output + "_b"),
            ]
            nodes.append(
                helper.make_node(
                    "Gemm", [n.inputs[0], n.output + "_w", n.output + "_b"], [out], transB=1
                )
            )
        if n.act == "relu":
            nodes.append(helper.make_node("Relu", [out], [n.output]))
        elif n.act == "relu6":
            nodes.append(helper.make_node("Clip", [out, "zero", "six"], [n.output]))
    graph = helper.make_graph(
        nodes,
        net.name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, net.size, net.size])],
        [helper.make_tensor_value_info(net.output, TensorProto.FLOAT, ["batch", net.classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


# --- PyTorch ---------------------------------------------------------------------


def torch_module(net: Network) -> Any:
    """An `nn.Module` computing the network (for tracing, export or in-process use)."""
    import torch
    from torch import nn

    class Net(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleDict()
            for n in net.nodes:
                if n.op in ("conv", "linear"):
                    assert n.weight is not None and n.bias is not None
                    if n.op == "conv":
                        cout, cin_g, k, _ = n.weight.shape
                        layer: nn.Module = nn.Conv2d(
                            cin_g * n.groups, cout, k, n.stride, n.pad, groups=n.groups
                        )
                    else:
                        layer = nn.Linear(n.weight.shape[1], n.weight.shape[0])
                    with torch.no_grad():
                        layer.weight.copy_(torch.from_numpy(n.weight))
                        layer.bias.copy_(torch.from_numpy(n.bias))
                    self.layers[n.output] = layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            values = {"x": x}
            for n in net.nodes:
                a = values[n.inputs[0]]
                if n.op in ("conv", "linear"):
                    out = self.layers[n.output](a)
                elif n.op == "add":
                    out = a + values[n.inputs[1]]
                elif n.op == "maxpool":
                    out = nn.functional.max_pool2d(a, 3, 2, 1)
                else:
                    out = a.mean(dim=(2, 3))
                if n.act == "relu":
                    out = torch.relu(out)
                elif n.act == "relu6":
                    out = nn.functional.relu6(out)
                values[n.output] = out
            return values[net.output]

    return Net().eval()


def build_torchscript(net: Network, path: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(torch_module(net), torch.from_numpy(net.sample(2)))
    traced.save(str(path))
    return path


def build_exported(net: Network, path: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        torch_module(net), (torch.from_numpy(net.sample(2)),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, str(path))
    return path


# --- TensorFlow / Keras 3 ----------------------------------------------------------


def keras_model(net: Network) -> Any:
    """A Keras functional model computing the network on NCHW input."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    inp = keras.Input((3, net.size, net.size), name="x")
    values: dict[str, Any] = {"x": keras.layers.Permute((2, 3, 1))(inp)}  # to NHWC
    for n in net.nodes:
        a = values[n.inputs[0]]
        if n.op == "conv":
            assert n.weight is not None and n.bias is not None
            cout, cin_g, k, _ = n.weight.shape
            if n.pad:
                a = keras.layers.ZeroPadding2D(n.pad)(a)
            if n.groups > 1 and n.groups == cout and cin_g == 1:
                layer: Any = keras.layers.DepthwiseConv2D(k, n.stride, "valid")
                kernel = n.weight.transpose(2, 3, 0, 1)  # [k, k, channels, 1]
            else:
                assert n.groups == 1, "grouped (non-depthwise) convolutions are not built"
                layer = keras.layers.Conv2D(cout, k, n.stride, "valid")
                kernel = n.weight.transpose(2, 3, 1, 0)  # HWIO
            out = layer(a)
            layer.set_weights([kernel, n.bias])
        elif n.op == "add":
            out = keras.layers.Add()([a, values[n.inputs[1]]])
        elif n.op == "maxpool":
            # after a ReLU every value is >= 0: zero padding pools as -inf padding does
            out = keras.layers.MaxPooling2D(3, 2)(keras.layers.ZeroPadding2D(1)(a))
        elif n.op == "gap":
            out = keras.layers.GlobalAveragePooling2D()(a)
        else:
            assert n.weight is not None and n.bias is not None
            layer = keras.layers.Dense(n.weight.shape[0])
            out = layer(a)
            layer.set_weights([n.weight.T, n.bias])
        if n.act:
            out = keras.layers.ReLU(max_value=6.0 if n.act == "relu6" else None)(out)
        values[n.output] = out
    return keras.Model(inp, values[net.output], name=net.name)


def build_savedmodel(net: Network, path: Path) -> Path:
    """A SavedModel exported by Keras 3 (`model.export`): signature `serving_default`,
    input `x`, output `output_0`."""
    keras_model(net).export(str(path), verbose=False)
    return path


# --- OpenVINO --------------------------------------------------------------------


def build_openvino(net: Network, path: Path) -> Path:
    """OpenVINO IR (`path` .xml, and its .bin beside it), converted from the ONNX model."""
    import tempfile

    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        source = build_onnx(net, Path(tmp) / "model.onnx")
        path.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov.convert_model(str(source)), str(path), compress_to_fp16=False)
    return path
