"""The lab's models: one function in every format, the empty twin a slice of its input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conveyor.lab.inprocess import load
from conveyor.lab.models import resolve

FRAMEWORK = {"onnx": "ort", "torchscript": "torch", "savedmodel": "tf"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    return resolve("tiny", tmp_path_factory.mktemp("lab-cache"))


def test_every_format_computes_the_same(tiny: tuple[object, object]) -> None:
    real, empty = tiny
    assert sorted(real.files) == ["onnx", "savedmodel", "torchscript"]  # type: ignore[attr-defined]
    x = real.sample(5)  # type: ignore[attr-defined]
    ref = real.reference(x)  # type: ignore[attr-defined]
    assert ref.shape == (5, 256)
    for fmt, path in real.files.items():  # type: ignore[attr-defined]
        out = load(FRAMEWORK[fmt], str(path), 1, "x")(x)
        assert np.abs(out - ref).max() <= 1e-4, fmt
    for fmt, path in empty.files.items():  # type: ignore[attr-defined]
        out = load(FRAMEWORK[fmt], str(path), 1, "x")(x)
        assert np.array_equal(out, x), fmt  # [batch, 256]: the slice is all of it


def test_built_once(tmp_path: Path) -> None:
    real, _ = resolve("tiny", tmp_path)
    stamp = real.files["onnx"].stat().st_mtime_ns
    again, _ = resolve("tiny", tmp_path)
    assert again.files["onnx"].stat().st_mtime_ns == stamp


def test_an_onnx_file_is_onnx_only(tmp_path: Path) -> None:
    w = np.ones((4, 3), np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["inp", "W"], ["out"])],
        "g",
        [helper.make_tensor_value_info("inp", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "mine.onnx"
    onnx.save(model, str(path))
    real, empty = resolve(str(path), tmp_path / "cache")
    assert real.input_name == "inp" and real.output_name == "out"
    assert real.item_shape == (4,) and real.output_size == 3
    assert set(real.files) == {"onnx"} and "torchscript" in real.missing
    x = real.sample(2)
    assert np.allclose(real.reference(x), x @ w)
    assert empty.item_shape == (4,) and empty.output_size == 3


def test_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model"):
        resolve("resnet9000", tmp_path)
