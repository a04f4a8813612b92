"""The official tritonclient gRPC client (sync and asyncio) and the standard health
service against `conveyor serve`, unmodified."""

from __future__ import annotations

import asyncio
import queue
from functools import partial

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from conveyor.demo.models import linear_weights
from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(server: ServerProcess) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_url)


def simple_inputs(a: np.ndarray, b: np.ndarray) -> list[grpcclient.InferInput]:
    inputs = [
        grpcclient.InferInput("INPUT0", list(a.shape), "INT32"),
        grpcclient.InferInput("INPUT1", list(b.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def test_health_metadata_config(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("simple") and client.is_model_ready("simple", "1")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "conveyor" and "statistics" in meta["extensions"]
    model = client.get_model_metadata("simple", as_json=True)
    assert model["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": ["-1", "16"]}
    config = client.get_model_config("resnet", as_json=True)["config"]
    assert config["max_batch_size"] == 8
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert config["instance_group"][0]["count"] == 2


def test_infer_and_statistics(client: grpcclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("simple", as_json=True)["model_stats"][0]
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 5, np.int32)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT1")]
    result = client.infer("simple", simple_inputs(a, b), outputs=outputs, request_id="r7")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert result.as_numpy("OUTPUT0") is None
    assert result.get_response().id == "r7"
    after = client.get_inference_statistics("simple", as_json=True)["model_stats"][0]
    success = int(after["inference_stats"]["success"]["count"])
    assert success == int(before["inference_stats"].get("success", {}).get("count", 0)) + 1
    assert int(after["inference_count"]) == int(before.get("inference_count", 0)) + 2


def test_typed_contents_are_accepted(server: ServerProcess) -> None:
    from conveyor.grpc import inference_pb2 as pb
    from conveyor.grpc import inference_pb2_grpc as pb_grpc

    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        req = pb.ModelInferRequest(model_name="linear")
        t = req.inputs.add(name="x", datatype="FP32", shape=[1, 256])
        v = np.linspace(-1, 1, 256, dtype=np.float32)
        t.contents.fp32_contents.extend(v.tolist())
        resp = stub.ModelInfer(req)
        y = np.frombuffer(resp.raw_output_contents[0], np.float32)
        np.testing.assert_allclose(y, v @ linear_weights(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("inputs", "code", "message"),
    [
        ("wrong dtype", grpc.StatusCode.INVALID_ARGUMENT, "expected datatype INT32, got FP32"),
        ("raw size", grpc.StatusCode.INVALID_ARGUMENT, "binary_data_size is 60 bytes"),
        (
            "unknown model",
            grpc.StatusCode.NOT_FOUND,
            "Request for unknown model: 'ghost' is not found",
        ),
        ("unknown version", grpc.StatusCode.NOT_FOUND, "unknown version '9'"),
        ("raw count", grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents has 1 entries"),
        ("negative dim", grpc.StatusCode.INVALID_ARGUMENT, "has a negative dim"),
        ("bad datatype", grpc.StatusCode.INVALID_ARGUMENT, "unknown datatype 'FLOAT'"),
        ("typed count", grpc.StatusCode.INVALID_ARGUMENT, "int_contents has 3"),
        ("no data", grpc.StatusCode.INVALID_ARGUMENT, "has no data"),
        ("duplicate", grpc.StatusCode.INVALID_ARGUMENT, "appears twice"),
        ("priority", grpc.StatusCode.INVALID_ARGUMENT, "parameter 'priority'"),
    ],
)
def test_errors_have_status_codes(
    server: ServerProcess, inputs: str, code: grpc.StatusCode, message: str
) -> None:
    from conveyor.grpc import inference_pb2 as pb
    from conveyor.grpc import inference_pb2_grpc as pb_grpc

    req = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        req.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        req.raw_input_contents.append(np.ones(16, np.int32).tobytes())
    if inputs == "wrong dtype":
        req.inputs[0].datatype = "FP32"
    elif inputs == "raw size":
        req.raw_input_contents[0] = bytes(60)
    elif inputs == "unknown model":
        req.model_name = "ghost"
    elif inputs == "unknown version":
        req.model_version = "9"
    elif inputs == "raw count":
        del req.raw_input_contents[1]
    elif inputs == "negative dim":
        req.inputs[0].shape[1] = -16
    elif inputs == "bad datatype":
        req.inputs[0].datatype = "FLOAT"
    elif inputs in ("typed count", "no data"):
        del req.raw_input_contents[:]
        if inputs == "typed count":
            for t in req.inputs:
                t.contents.int_contents.extend([1, 2, 3])
    elif inputs == "duplicate":
        req.inputs[1].name = "INPUT0"
    elif inputs == "priority":
        req.parameters["priority"].string_param = "high"
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(req)
        assert info.value.code() == code
        assert message in info.value.details()
        assert stub.ServerLive(pb.ServerLiveRequest()).live  # still serving


def test_stream_infer(client: grpcclient.InferenceServerClient) -> None:
    results: queue.Queue[tuple[object, object]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    for i in range(8):
        a = np.full((1, 16), i, np.int32)
        client.async_stream_infer("simple", simple_inputs(a, a), request_id=str(i))
    bad = grpcclient.InferInput("INPUT0", [1, 16], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 16), np.float32))
    client.async_stream_infer("simple", [bad], request_id="bad")
    seen, errors = {}, []
    for _ in range(9):
        result, error = results.get(timeout=60)  # only bounds a hang
        if error is not None:
            errors.append(str(error))
        else:
            seen[result.get_response().id] = result.as_numpy("OUTPUT0")  # type: ignore[attr-defined]
    client.stop_stream()
    assert sorted(seen) == [str(i) for i in range(8)]
    for i in range(8):
        np.testing.assert_array_equal(seen[str(i)], np.full((1, 16), 2 * i, np.int32))
    assert len(errors) == 1 and "expected datatype INT32" in errors[0]


def test_asyncio_client(server: ServerProcess) -> None:
    async def main() -> list[np.ndarray]:
        client = grpcaio.InferenceServerClient(server.grpc_url)
        try:
            assert await client.is_server_ready()
            calls = []
            for i in range(16):
                a = np.full((1, 16), i, np.int32)
                calls.append(client.infer("simple", simple_inputs(a, a)))
            results = await asyncio.gather(*calls)
            return [r.as_numpy("OUTPUT0") for r in results]
        finally:
            await client.close()

    for i, out in enumerate(asyncio.run(main())):
        np.testing.assert_array_equal(out, np.full((1, 16), 2 * i, np.int32))


def test_health_service_agrees_with_rest(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            status = stub.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
    assert server.request("GET", "/v2/health/ready")[0] == 200


def test_repository_index(client: grpcclient.InferenceServerClient) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {m["name"] for m in index} == {"simple", "linear", "mlp", "resnet"}
    with pytest.raises(InferenceServerException, match="explicit"):
        client.load_model("simple")


def test_callback_async_infer(client: grpcclient.InferenceServerClient) -> None:
    done: queue.Queue[tuple[object, object]] = queue.Queue()
    a = np.ones((1, 16), np.int32)
    client.async_infer(
        "simple",
        simple_inputs(a, a),
        partial(lambda q, result, error: q.put((result, error)), done),
    )
    result, error = done.get(timeout=60)  # only bounds a hang
    assert error is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)  # type: ignore[attr-defined]


@pytest.mark.parametrize("front", ["thread", "loop"])
def test_grpc_in_the_server_process(front: str, demo_repo: object, tmp_path: object) -> None:
    from pathlib import Path

    proc = ServerProcess(
        Path(str(demo_repo)),
        "--grpc-front",
        front,
        "--model-control-mode",
        "explicit",
        "--load-model",
        "simple",
        log_dir=Path(str(tmp_path)),
    ).start()
    try:
        client = grpcclient.InferenceServerClient(proc.grpc_url)
        a = np.ones((1, 16), np.int32)
        out = client.infer("simple", simple_inputs(a, a)).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(out, a * 2)
        assert client.is_server_ready()
    finally:
        assert proc.stop() == 0
