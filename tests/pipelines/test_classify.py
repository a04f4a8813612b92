"""Image classification as a native pipeline: Python function steps (decode, top-5) around
an ONNX ResNet-50 (fixed-seed weights), served; equal to the same steps in-process."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from conveyor.demo.pipelines import write_pipelines
from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e


def png(width: int = 320, height: int = 240) -> bytes:
    """A real PNG: colour gradients and a disc, made here (no image is downloaded)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [x * 255 // width, y * 255 // height, ((x - 160) ** 2 + (y - 120) ** 2 < 3600) * 255], -1
    )
    out = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cls") / "repo"
    assert write_pipelines(root, ["classify"]) == ["resnet50", "classify"]
    return root


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def classify(server: ServerProcess, image: bytes) -> tuple[list[bytes], np.ndarray]:
    client = httpclient.InferenceServerClient(server.url)
    try:
        tensor = httpclient.InferInput("IMAGE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
        result = client.infer("classify", [tensor])
        return list(result.as_numpy("LABELS")), result.as_numpy("SCORES")
    finally:
        client.close()


def test_served_top5_equals_the_same_steps_in_process(server: ServerProcess, repo: Path) -> None:
    image = png()
    labels, scores = classify(server, image)
    spec = importlib.util.spec_from_file_location("steps", repo / "classify" / "1" / "steps.py")
    assert spec is not None and spec.loader is not None
    steps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(steps)
    session = ort.InferenceSession(str(repo / "resnet50" / "1" / "model.onnx"))
    pixels = steps.decode({"image": np.array([image], dtype=np.object_)})["images"]
    assert pixels.shape == (1, 3, 224, 224)
    logits = session.run(None, {"images": pixels})[0]
    expected = steps.top5({"logits": logits})
    assert labels == list(expected["labels"]) and len(labels) == 5
    np.testing.assert_allclose(scores, expected["scores"], rtol=1e-4)
    assert np.all(np.diff(scores) <= 0) and 0 < scores.sum() <= 1


def test_a_malformed_image_names_the_decode_step(server: ServerProcess) -> None:
    with pytest.raises(InferenceServerException, match=r"step 0 \('steps.py:decode'\).*decodable"):
        classify(server, b"\x89PNG but not really")
    assert len(classify(server, png(64, 48))[0]) == 5  # and the next image is served
