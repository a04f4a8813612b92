"""The official tritonclient (HTTP) talks to `conveyor serve` unmodified."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conveyor.demo.models import linear_weights
from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(server: ServerProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.url)


def test_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("simple") and client.is_model_ready("simple", "1")
    meta = client.get_server_metadata()
    assert meta["name"] == "conveyor" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("simple")
    assert model["versions"] == ["1"]
    assert model["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]}
    config = client.get_model_config("simple")
    assert config["max_batch_size"] == 8 and config["input"][0]["data_type"] == "TYPE_INT32"
    mlp = client.get_model_config("mlp")  # completed from the ONNX file
    assert mlp["input"][0]["name"] == "features" and "dynamic_batching" in mlp


@pytest.mark.parametrize("binary", [False, True])
def test_infer_simple(client: httpclient.InferenceServerClient, binary: bool) -> None:
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, np.int32)
    inputs = [
        httpclient.InferInput("INPUT0", [2, 16], "INT32"),
        httpclient.InferInput("INPUT1", [2, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=not binary),
    ]
    result = client.infer("simple", inputs, outputs=outputs, request_id="abc", model_version="1")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert result.get_response()["id"] == "abc"
    assert result.get_response()["model_version"] == "1"


def test_infer_resnet_binary_and_linear_json(client: httpclient.InferenceServerClient) -> None:
    x = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
    inp = httpclient.InferInput("images", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    logits = client.infer("resnet", [inp]).as_numpy("logits")
    assert logits.shape == (2, 1000) and np.isfinite(logits).all()

    v = np.random.default_rng(1).standard_normal((3, 256)).astype(np.float32)
    inp = httpclient.InferInput("x", [3, 256], "FP32")
    inp.set_data_from_numpy(v, binary_data=False)
    y = client.infer("linear", [inp]).as_numpy("y")
    np.testing.assert_allclose(y, v @ linear_weights(), rtol=1e-4, atol=1e-4)


def test_errors_reach_the_client(client: httpclient.InferenceServerClient) -> None:
    inp = httpclient.InferInput("x", [1, 256], "FP64")
    inp.set_data_from_numpy(np.zeros((1, 256)), binary_data=True)
    with pytest.raises(InferenceServerException, match="expected datatype FP32, got FP64"):
        client.infer("linear", [inp])
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("ghost")
    # Triton's example clients test exactly this
    assert info.value.message().startswith("Request for unknown model")
    assert info.value.message() == "Request for unknown model: 'ghost' is not found"
    assert client.is_server_live()


def test_concurrent_multi_row_requests_are_answered_exactly(server: ServerProcess) -> None:
    """96 requests of 1-4 rows in flight together through tritonclient's async_infer: the
    batcher concatenates them and splits each answer back exactly."""
    w = linear_weights()
    client = httpclient.InferenceServerClient(server.url, concurrency=16)
    pending = []
    for i in range(96):
        rows = 1 + i % 4
        v = np.random.default_rng(i).standard_normal((rows, 256)).astype(np.float32)
        inp = httpclient.InferInput("x", [rows, 256], "FP32")
        inp.set_data_from_numpy(v, binary_data=i % 2 == 0)
        pending.append((v, client.async_infer("linear", [inp])))
    for v, handle in pending:
        np.testing.assert_allclose(handle.get_result().as_numpy("y"), v @ w, rtol=1e-4, atol=1e-4)
    client.close()
