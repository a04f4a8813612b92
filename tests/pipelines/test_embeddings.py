"""Sentence embeddings on all-MiniLM-L6-v2's real weights, served as an ensemble (Python
tokenizer -> ONNX encoder): the DATA.md cosine pairs, and equality with an independent
numpy computation of the same weights."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient

from conveyor.demo import minilm
from conveyor.demo.pipelines import write_pipelines
from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The stock market fell sharply today.",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("emb") / "repo"
    assert write_pipelines(repo, ["embeddings"]) == [
        "minilm_tokenizer",
        "minilm_encoder",
        "minilm",
    ]
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def embed(server: ServerProcess, sentences: list[str]) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.url)
    try:
        text = httpclient.InferInput("TEXT", [len(sentences)], "BYTES")
        text.set_data_from_numpy(np.array([s.encode() for s in sentences], dtype=np.object_))
        out: np.ndarray = client.infer("minilm", [text]).as_numpy("EMBEDDING")
        return out
    finally:
        client.close()


def test_served_embeddings_have_the_known_similarities(server: ServerProcess) -> None:
    e = embed(server, SENTENCES)
    assert e.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert abs(float(e[0] @ e[1]) - 0.67) <= 0.01  # guitar ~ instrument
    assert abs(float(e[0] @ e[2]) - (-0.05)) <= 0.01  # guitar vs stock market


def test_served_embeddings_equal_an_independent_numpy_computation(server: ServerProcess) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm.model_dir() / "tokenizer.json"))
    tokenizer.enable_padding()
    encoded = tokenizer.encode_batch(SENTENCES[:2])
    ids = np.array([x.ids for x in encoded], np.int64)
    mask = np.array([x.attention_mask for x in encoded], np.int64)
    expected = minilm.reference(ids, mask)
    np.testing.assert_allclose(embed(server, SENTENCES[:2]), expected, atol=1e-4)
