"""OCR as a native pipeline on real weights: PP-OCR's detector, direction classifier and
recogniser from rapidocr-onnxruntime's wheel, Python steps around them; served, it reads
what rapidocr reads in-process, line for line, box for box."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from rapidocr_onnxruntime import RapidOCR
from tritonclient.utils import InferenceServerException

from conveyor.demo.pipelines import write_pipelines
from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

DATA = Path(skimage.__file__).parent / "data"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("ocr") / "repo"
    assert write_pipelines(repo, ["ocr"]) == ["ocr_det", "ocr_cls", "ocr_rec", "ocr"]
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def read(server: ServerProcess, image: bytes, **params: object) -> httpclient.InferResult:
    client = httpclient.InferenceServerClient(server.url, network_timeout=300)
    try:
        tensor = httpclient.InferInput("IMAGE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
        return client.infer("ocr", [tensor], parameters=params or None)
    finally:
        client.close()


def test_served_lines_equal_rapidocr_in_process(server: ServerProcess) -> None:
    page = (DATA / "page.png").read_bytes()
    result = read(server, page)
    texts = [t.decode() for t in result.as_numpy("TEXT")]
    assert texts[:2] == [
        "Region-basedsegmentation",
        "Let us first determine markers of the coins and the",
    ]
    expected = RapidOCR()(page)[0]
    assert expected is not None
    assert texts == [line[1] for line in expected]
    np.testing.assert_allclose(result.as_numpy("BOXES"), [line[0] for line in expected])
    np.testing.assert_allclose(result.as_numpy("SCORES"), [line[2] for line in expected], atol=1e-3)


def test_a_page_without_text_takes_the_empty_branch(server: ServerProcess) -> None:
    result = read(server, (DATA / "camera.png").read_bytes(), step_timings=True)
    assert result.as_numpy("TEXT").shape == (0,)
    assert result.as_numpy("BOXES").shape == (0, 4, 2)
    steps = json.loads(result.get_response()["parameters"]["step_timings"])
    assert "7:steps.py:no_text" in steps
    assert not any("ocr_rec" in name for name in steps)  # skipped by its condition


def test_every_stage_is_timed_and_served_over_grpc(server: ServerProcess) -> None:
    result = read(server, (DATA / "text.png").read_bytes(), step_timings=True)
    steps = json.loads(result.get_response()["parameters"]["step_timings"])
    assert [name.partition(":")[2] for name in steps] == [
        "steps.py:detect_input",
        "ocr_det",
        "steps.py:boxes",
        "ocr_cls",
        "steps.py:recognize_input",
        "ocr_rec",
        "steps.py:decode",
    ]
    assert all(t["compute_us"] > 0 for t in steps.values())
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        tensor = grpcclient.InferInput("IMAGE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([(DATA / "text.png").read_bytes()], dtype=np.object_))
        over_grpc = client.infer("ocr", [tensor], client_timeout=300).as_numpy("TEXT")
    finally:
        client.close()
    assert list(over_grpc) == list(result.as_numpy("TEXT"))


def test_a_malformed_image_names_the_step_and_the_next_page_is_read(
    server: ServerProcess,
) -> None:
    with pytest.raises(
        InferenceServerException, match=r"step 0 \('steps.py:detect_input'\).*decodable"
    ):
        read(server, b"GIF89a and then nothing")
    assert read(server, (DATA / "text.png").read_bytes()).as_numpy("TEXT").size
