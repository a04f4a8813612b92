"""Demo and test models, built offline with `onnx.helper` and fixed-seed weights.

Nothing is downloaded: every architecture is written here and exported as ONNX
(opset 17, dynamic batch dimension).

- `simple`: Triton's classic example: INPUT0, INPUT1 (INT32 [16]) -> OUTPUT0 = sum,
  OUTPUT1 = difference. The per-request overhead model.
- `linear`: x (FP32 [256]) -> x·W, W 256x256: the transport/codec benchmark model.
- `mlp`: a two-layer classifier, 64 features -> 10 class probabilities.
- `resnet`: a ResNet-18-style CNN (BasicBlocks [2,2,2,2], BatchNorm folded into the
  convolutions), 3x224x224 images -> 1000 logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr, name)


def build_simple(path: Path, width: int = 16) -> None:
    shape: list[str | int | None] = ["batch", width]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [
            helper.make_tensor_value_info("INPUT0", TensorProto.INT32, shape),
            helper.make_tensor_value_info("INPUT1", TensorProto.INT32, shape),
        ],
        [
            helper.make_tensor_value_info("OUTPUT0", TensorProto.INT32, shape),
            helper.make_tensor_value_info("OUTPUT1", TensorProto.INT32, shape),
        ],
    )
    _save(graph, path)


def linear_weights(width: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w: np.ndarray = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    return w


def build_linear(path: Path, width: int = 256, seed: int = 0) -> None:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [_init("W", linear_weights(width, seed))],
    )
    _save(graph, path)


def build_mlp(
    path: Path, features: int = 64, hidden: int = 128, classes: int = 10, seed: int = 0
) -> None:
    rng = np.random.default_rng(seed)

    def dense(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        return w.astype(np.float32), (rng.standard_normal(n_out) * 0.01).astype(np.float32)

    w1, b1 = dense(features, hidden)
    w2, b2 = dense(hidden, classes)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["a"]),
            helper.make_node("Gemm", ["a", "w2", "b2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        [_init("w1", w1), _init("b1", b1), _init("w2", w2), _init("b2", b2)],
    )
    _save(graph, path)


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def conv(
        self,
        x: str,
        c_in: int,
        c_out: int,
        k: int,
        stride: int,
        scale: float = 1.0,
        relu: bool = True,
    ) -> str:
        # He-initialised convolution with a bias: BatchNorm folded in, as at inference.
        fan_in = c_in * k * k
        w = self.rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2.0 / fan_in) * scale
        b = self.rng.standard_normal(c_out) * 0.01
        wn, bn, out = self.name("W"), self.name("B"), self.name("conv")
        self.inits += [_init(wn, w.astype(np.float32)), _init(bn, b.astype(np.float32))]
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, wn, bn],
                [out],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad] * 4,
            )
        )
        return self.relu(out) if relu else out

    def relu(self, x: str) -> str:
        out = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [out]))
        return out

    def block(self, x: str, c_in: int, c_out: int, stride: int) -> str:
        h = self.conv(x, c_in, c_out, 3, stride)
        h = self.conv(h, c_out, c_out, 3, 1, scale=0.2, relu=False)
        shortcut = (
            x if stride == 1 and c_in == c_out else self.conv(x, c_in, c_out, 1, stride, relu=False)
        )
        out = self.name("add")
        self.nodes.append(helper.make_node("Add", [h, shortcut], [out]))
        return self.relu(out)

    def bottleneck(self, x: str, c_in: int, width: int, stride: int) -> str:
        """ResNet-50's block: 1x1 down to `width`, 3x3 (strided), 1x1 up to 4 x width."""
        c_out = 4 * width
        h = self.conv(x, c_in, width, 1, 1)
        h = self.conv(h, width, width, 3, stride)
        h = self.conv(h, width, c_out, 1, 1, scale=0.2, relu=False)
        shortcut = (
            x if stride == 1 and c_in == c_out else self.conv(x, c_in, c_out, 1, stride, relu=False)
        )
        out = self.name("add")
        self.nodes.append(helper.make_node("Add", [h, shortcut], [out]))
        return self.relu(out)


def build_resnet50(path: Path, seed: int = 0) -> None:
    """ResNet-50 (bottleneck blocks 3-4-6-3, ~25.6 M parameters), fixed-seed weights."""
    build_resnet(path, blocks=(3, 4, 6, 3), seed=seed, bottleneck=True)


def build_resnet(
    path: Path,
    blocks: tuple[int, ...] = (2, 2, 2, 2),
    classes: int = 1000,
    image: int = 224,
    seed: int = 0,
    bottleneck: bool = False,
) -> None:
    g = _Graph(seed)
    x = g.conv("images", 3, 64, 7, 2)
    pooled = g.name("pool")
    g.nodes.append(
        helper.make_node(
            "MaxPool", [x], [pooled], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        )
    )
    x, c = pooled, 64
    for stage, count in enumerate(blocks):
        width = 64 * 2**stage
        for i in range(count):
            stride = 2 if (i == 0 and stage > 0) else 1
            if bottleneck:
                x = g.bottleneck(x, c, width, stride)
                c = 4 * width
            else:
                x = g.block(x, c, width, stride)
                c = width
    gap, flat = g.name("gap"), g.name("flat")
    fc_w = (g.rng.standard_normal((c, classes)) * np.sqrt(1.0 / c)).astype(np.float32)
    fc_b = np.zeros(classes, np.float32)
    g.inits += [_init("fc_w", fc_w), _init("fc_b", fc_b)]
    g.nodes += [
        helper.make_node("GlobalAveragePool", [x], [gap]),
        helper.make_node("Flatten", [gap], [flat], axis=1),
        helper.make_node("Gemm", [flat, "fc_w", "fc_b"], ["logits"]),
    ]
    graph = helper.make_graph(
        g.nodes,
        "resnet",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, image, image])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        g.inits,
    )
    _save(graph, path)
