"""`conveyor analyze` on ONNX: FLOPs of ResNet-50 and of a BERT-base encoder against
counts written here from the layer shapes; weight bytes against the file's initialisers;
dynamic dimensions fixed or named; torch's counter agrees on the same network."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conveyor.analyze.onnx_model import AnalysisError, analyze_onnx
from conveyor.cli import main
from conveyor.demo import frameworks


def independent_macs(net: frameworks.Network) -> int:
    """MACs of a `frameworks` network from its layers alone: each convolution's output
    positions x its kernel volume, the classifier's weight count."""
    size = {"x": net.size}
    total = 0
    for n in net.nodes:
        h = size[n.inputs[0]]
        if n.op == "conv":
            assert n.weight is not None
            cout, cin_g, k, _ = n.weight.shape
            h = (h + 2 * n.pad - k) // n.stride + 1
            total += h * h * cout * cin_g * k * k
        elif n.op == "maxpool":
            h = (h + 2 - 3) // 2 + 1
        elif n.op == "linear":
            assert n.weight is not None
            total += n.weight.size
        size[n.output] = h
    return total


def test_resnet50_flops_match_the_layer_count(tmp_path: Path) -> None:
    net = frameworks.resnet50()
    path = frameworks.build_onnx(net, tmp_path / "model.onnx")
    expected = independent_macs(net)
    assert 4.0e9 < expected < 4.2e9  # ResNet-50 at 224x224: ~4.1 G MACs per image
    one = analyze_onnx(path, batch=1)
    assert abs(one.macs - expected) / expected < 0.01
    assert one.flops >= 2 * one.macs  # plus the elementwise work
    eight = analyze_onnx(path, batch=8)
    assert eight.macs == 8 * one.macs and eight.to_json()["per_item"]["macs"] == one.macs
    assert eight.peak_activation_bytes > one.peak_activation_bytes
    assert one.params == sum(n.weight.size + n.bias.size for n in net.nodes if n.weight is not None)


def bert_encoder(path: Path, layers: int = 12, hidden: int = 768, heads: int = 12) -> None:
    """A BERT-base-shaped encoder over embeddings [batch, seq, hidden]: weights as graph
    inputs (their shapes are what counts), so no 400 MB file is written."""
    nodes, inputs = [], [helper.make_tensor_value_info("h0", TensorProto.FLOAT, ["b", "s", hidden])]
    d = hidden // heads
    consts = [
        numpy_helper.from_array(np.array([0, 0, heads, d], np.int64), "split"),
        numpy_helper.from_array(np.array([0, 0, hidden], np.int64), "merge"),
        numpy_helper.from_array(np.array(1 / math.sqrt(d), np.float32), "scale"),
    ]

    def weight(name: str, *shape: int) -> str:
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    x = "h0"
    for i in range(layers):
        p = f"l{i}"

        def dense(src: str, name: str, n_in: int, n_out: int, p: str = p) -> str:
            w, b = weight(f"{p}.{name}.w", n_in, n_out), weight(f"{p}.{name}.b", n_out)
            nodes.append(helper.make_node("MatMul", [src, w], [f"{p}.{name}.mm"]))
            nodes.append(helper.make_node("Add", [f"{p}.{name}.mm", b], [f"{p}.{name}"]))
            return f"{p}.{name}"

        def split(t: str, perm: list[int], p: str = p) -> str:
            nodes.append(helper.make_node("Reshape", [t, "split"], [t + ".r"]))
            nodes.append(helper.make_node("Transpose", [t + ".r"], [t + ".t"], perm=perm))
            return t + ".t"

        q = split(dense(x, "q", hidden, hidden), [0, 2, 1, 3])
        k = split(dense(x, "k", hidden, hidden), [0, 2, 3, 1])
        v = split(dense(x, "v", hidden, hidden), [0, 2, 1, 3])
        nodes.extend(
            [
                helper.make_node("MatMul", [q, k], [f"{p}.scores"]),
                helper.make_node("Mul", [f"{p}.scores", "scale"], [f"{p}.scaled"]),
                helper.make_node("Softmax", [f"{p}.scaled"], [f"{p}.probs"], axis=-1),
                helper.make_node("MatMul", [f"{p}.probs", v], [f"{p}.ctx"]),
                helper.make_node("Transpose", [f"{p}.ctx"], [f"{p}.ctx.t"], perm=[0, 2, 1, 3]),
                helper.make_node("Reshape", [f"{p}.ctx.t", "merge"], [f"{p}.ctx.m"]),
            ]
        )
        attn = dense(f"{p}.ctx.m", "o", hidden, hidden)
        nodes.append(helper.make_node("Add", [attn, x], [f"{p}.res1"]))
        g1, b1 = weight(f"{p}.ln1.g", hidden), weight(f"{p}.ln1.b", hidden)
        nodes.append(helper.make_node("LayerNormalization", [f"{p}.res1", g1, b1], [f"{p}.n1"]))
        up = dense(f"{p}.n1", "up", hidden, 4 * hidden)
        nodes.append(helper.make_node("Erf", [up], [f"{p}.act"]))  # GELU's costly part
        down = dense(f"{p}.act", "down", 4 * hidden, hidden)
        nodes.append(helper.make_node("Add", [down, f"{p}.n1"], [f"{p}.res2"]))
        g2, b2 = weight(f"{p}.ln2.g", hidden), weight(f"{p}.ln2.b", hidden)
        x = f"h{i + 1}"
        nodes.append(helper.make_node("LayerNormalization", [f"{p}.res2", g2, b2], [x]))
    graph = helper.make_graph(
        nodes,
        "bert",
        inputs,
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["b", "s", hidden])],
        consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))


def test_bert_base_flops_at_sequence_128(tmp_path: Path) -> None:
    bert_encoder(tmp_path / "bert.onnx")
    s, h, layers = 128, 768, 12
    # per layer: Q, K, V, output projections (4 h^2), the FFN (8 h^2) per token, and the
    # two attention products (2 s^2 h)
    expected = layers * (s * 12 * h * h + 2 * s * s * h)
    found = analyze_onnx(tmp_path / "bert.onnx", batch=1, shapes={"h0": [1, s, h]})
    assert abs(found.macs - expected) / expected < 0.01
    assert 11e9 < found.macs < 11.3e9  # BERT-base encoder, sequence 128: ~11.2 G MACs


def test_weight_bytes_are_the_initialisers(framework_models: Path) -> None:
    path = framework_models / "model.onnx"
    model = onnx.load(str(path))
    on_file = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    found = analyze_onnx(path)
    assert found.weight_bytes == on_file
    assert found.params == sum(numpy_helper.to_array(t).size for t in model.graph.initializer)
    assert found.intensity == found.flops / found.bytes_moved


def test_a_dynamic_dimension_must_be_given(tmp_path: Path) -> None:
    bert_encoder(tmp_path / "bert.onnx", layers=1, hidden=64, heads=4)
    with pytest.raises(AnalysisError, match=r"input 'h0' dimension 1 \(s\) is dynamic"):
        analyze_onnx(tmp_path / "bert.onnx")
    with pytest.raises(AnalysisError, match="2 dims given, the input has 3"):
        analyze_onnx(tmp_path / "bert.onnx", shapes={"h0": [1, 16]})


def test_torch_counter_agrees_with_the_onnx_count(framework_models: Path) -> None:
    from conveyor.analyze.cli import analyze_torch

    onnx_count = analyze_onnx(framework_models / "model.onnx", batch=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_count = analyze_torch(framework_models / "model.pt2", 4, {})
    assert torch_count["per_batch"]["macs"] == onnx_count.macs
    assert torch_count["params"] == onnx_count.params


def test_the_command_on_a_repository_model(
    framework_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cnn" / "1").mkdir(parents=True)
    (tmp_path / "cnn" / "1" / "model.onnx").write_bytes(
        (framework_models / "model.onnx").read_bytes()
    )
    out = tmp_path / "a.json"
    assert main(["analyze", str(tmp_path / "cnn"), "--batch", "2", "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "conveyor.analyze/1" and doc["batch"] == 2
    assert doc["per_batch"]["flops"] == 2 * doc["per_item"]["flops"]
    text = capsys.readouterr().out
    assert "FLOPs per item" in text and "arithmetic intensity" in text and "Conv" in text
    assert main(["analyze", str(tmp_path / "nothing")]) == 2


def test_tensorflow_profiler_agrees_with_the_onnx_count(framework_models: Path) -> None:
    from conveyor.analyze.cli import analyze_tensorflow

    onnx_count = analyze_onnx(framework_models / "model.onnx", batch=2)
    tf_count = analyze_tensorflow(framework_models / "model.savedmodel", 2, {})
    assert tf_count["params"] == onnx_count.params
    assert tf_count["input_shapes"] == {"x": [2, 3, 32, 32]}
    assert tf_count["per_batch"]["flops"] >= 2 * onnx_count.macs
    # both count the elementwise work too (seen: 20 FLOPs apart in 6.9 M)
    assert abs(tf_count["per_batch"]["flops"] - onnx_count.flops) / onnx_count.flops < 0.001
