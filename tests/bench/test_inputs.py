"""Inputs from model metadata and from files, fitted to the model's dtype and shape."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conveyor.bench.inputs import model_inputs

META = {
    "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "ids", "datatype": "INT64", "shape": [-1, -1]},
    ]
}
IMAGE_META = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 8, 6]}]}


def test_random_is_seeded_and_zeros_are_zero() -> None:
    a = model_inputs(META, 2, {"ids": [2, 5]}, seed=7)
    b = model_inputs(META, 2, {"ids": [2, 5]}, seed=7)
    assert a["x"].shape == (2, 4) and a["x"].dtype == np.float32
    assert a["ids"].shape == (2, 5) and a["ids"].dtype == np.int64
    np.testing.assert_array_equal(a["x"], b["x"])
    zeros = model_inputs(META, 3, {}, seed=0, data="zeros")
    assert zeros["x"].shape == (3, 4) and not zeros["x"].any()


def test_json_in_perf_analyzer_form(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    doc = {"data": [{"x": [1, 2, 3, 4], "ids": {"content": [5, 6, 7], "shape": [1, 3]}}]}
    path.write_text(json.dumps(doc))
    got = model_inputs(META, 2, {}, seed=0, data=str(path))
    np.testing.assert_array_equal(got["x"], [[1, 2, 3, 4], [1, 2, 3, 4]])  # one sample x 2
    assert got["x"].dtype == np.float32
    np.testing.assert_array_equal(got["ids"], [[5, 6, 7]])
    path.write_text(json.dumps({"x": [1, 2, 3, 4]}))
    with pytest.raises(ValueError, match="no data for input 'ids'"):
        model_inputs(META, 1, {}, seed=0, data=str(path))


def test_bytes_from_b64(tmp_path: Path) -> None:
    meta = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}]}
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"text": [{"b64": base64.b64encode(b"\x00hi").decode()}]}))
    got = model_inputs(meta, 1, {}, seed=0, data=str(path))
    assert got["text"].tolist() == [b"\x00hi"]


def test_npy_file_wins_and_shape_is_checked(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(4, dtype=np.float64))
    got = model_inputs(META, 3, {}, seed=0, files={"x": tmp_path / "x.npy"})
    assert got["x"].shape == (3, 4) and got["x"].dtype == np.float32
    np.save(tmp_path / "bad.npy", np.zeros(5))
    with pytest.raises(ValueError, match=r"shape \[5\] does not fit"):
        model_inputs(META, 1, {}, seed=0, files={"x": tmp_path / "bad.npy"})
    with pytest.raises(ValueError, match="no such input"):
        model_inputs(META, 1, {}, seed=0, files={"nope": tmp_path / "x.npy"})


def test_image_is_resized_to_chw_and_scaled(tmp_path: Path) -> None:
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[..., 0] = 255  # pure red
    Image.fromarray(pixels).save(tmp_path / "red.png")
    got = model_inputs(IMAGE_META, 2, {}, seed=0, files={"image": tmp_path / "red.png"})
    image = got["image"]
    assert image.shape == (2, 3, 8, 6) and image.dtype == np.float32
    assert image[:, 0].min() == 1.0 and image[:, 1:].max() == 0.0
    hwc = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 8, 6, 3]}]}
    got = model_inputs(hwc, 1, {}, seed=0, files={"image": tmp_path / "red.png"})
    assert got["image"].shape == (1, 8, 6, 3) and got["image"][..., 0].min() == 255


def test_a_bytes_input_takes_the_file_itself(tmp_path: Path) -> None:
    """An image for a pipeline that decodes it is sent as its file's bytes."""
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x.png")
    meta = {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1]}]}
    got = model_inputs(meta, 1, {}, seed=0, files={"IMAGE": tmp_path / "x.png"})
    assert got["IMAGE"].shape == (1,) and got["IMAGE"][0] == (tmp_path / "x.png").read_bytes()


def test_bytes_tensors_go_out_as_the_v2_protocols_carry_them() -> None:
    """Binary V2 and gRPC: each element with its 4-byte length (as tritonclient sends
    it); JSON: text only, and a clear error for an image."""
    from tritonclient.utils import serialize_byte_tensor

    from conveyor.bench.targets import raw_tensor, v2_body

    image = np.array([b"\x89PNG\r\n\x1a\n\x00\xff"], dtype=np.object_)
    assert raw_tensor(image) == serialize_byte_tensor(image).item()
    body, headers = v2_body({"IMAGE": image}, binary=True)
    split = int(headers["inference-header-content-length"])
    header = json.loads(body[:split])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == 4 + 10
    assert body[split:] == raw_tensor(image)
    text, _ = v2_body({"TEXT": np.array([b"hello"], dtype=np.object_)}, binary=False)
    assert json.loads(text)["inputs"][0]["data"] == ["hello"]
    with pytest.raises(ValueError, match="no JSON form; use --protocol v2-binary"):
        v2_body({"IMAGE": image}, binary=False)
