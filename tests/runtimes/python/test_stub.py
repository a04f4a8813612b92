"""The worker side's pieces without a process: Triton's helper functions and objects as a
model.py sees them, the frame/tensor wire, and custom metrics in the core."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conveyor.runtimes.python.metrics import CustomMetrics
from conveyor.runtimes.python.stub import pb_utils, wire


def test_triton_type_helpers() -> None:
    assert pb_utils.triton_string_to_numpy("TYPE_FP32") is np.float32
    assert pb_utils.triton_string_to_numpy("TYPE_STRING") is np.object_
    assert pb_utils.numpy_to_triton_type(np.float32) == 11
    assert pb_utils.numpy_to_triton_type(np.object_) == 13
    assert pb_utils.triton_to_numpy_type(8) is np.int32
    config = {"input": [{"name": "A", "data_type": "TYPE_INT32"}], "output": [{"name": "B"}]}
    assert pb_utils.get_input_config_by_name(config, "A") == config["input"][0]
    assert pb_utils.get_output_config_by_name(config, "B") == {"name": "B"}
    assert pb_utils.get_output_config_by_name(config, "C") is None
    assert not pb_utils.using_decoupled_model_transaction_policy(config)
    assert pb_utils.using_decoupled_model_transaction_policy(
        {"model_transaction_policy": {"decoupled": True}}
    )


def test_byte_tensor_serialisation_is_tritons() -> None:
    arr = np.array([b"ab", b"", "c"], dtype=np.object_)
    packed = pb_utils.serialize_byte_tensor(arr)
    assert packed is not None
    assert packed.item() == b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x01\x00\x00\x00c"
    assert list(pb_utils.deserialize_bytes_tensor(packed.item())) == [b"ab", b"", b"c"]


def test_requests_responses_and_errors() -> None:
    t = pb_utils.Tensor("X", np.arange(3))
    assert t.name() == "X" and t.shape() == [3] and t.is_cpu()
    request = pb_utils.InferenceRequest(
        model_name=b"add_sub",  # a name read from a BYTES tensor
        inputs=[t],
        requested_output_names=["Y"],
        parameters={"k": 1},
    )
    assert request.model_name == "add_sub"
    assert json.loads(request.parameters()) == {"k": 1}
    assert pb_utils.get_input_tensor_by_name(request, "X") is t
    error = pb_utils.TritonError("bad", pb_utils.TritonError.INVALID_ARG)
    response = pb_utils.InferenceResponse(error=error)
    assert response.has_error() and response.error().message() == "bad"  # type: ignore[union-attr]
    assert pb_utils.get_output_tensor_by_name(pb_utils.InferenceResponse([t]), "X") is t


def test_auto_complete_config_object() -> None:
    config = pb_utils.ModelConfig({"name": "m", "input": [], "output": []})
    config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [4]})
    config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [4]})  # same: fine
    with pytest.raises(ValueError, match="already has dims"):
        config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [5]})
    config.set_max_batch_size(8)
    config.set_dynamic_batching()
    config.set_model_transaction_policy({"decoupled": True})
    got = config.as_dict()
    assert got["max_batch_size"] == 8 and got["dynamic_batching"] == {}
    assert len(got["input"]) == 1 and got["model_transaction_policy"] == {"decoupled": True}


def test_tensors_cross_the_arena_or_inline_when_they_do_not_fit() -> None:
    fd = os.memfd_create("test-arena")
    os.ftruncate(fd, 1 << 13)
    arena = wire.Arena(fd, 1 << 13)  # 2 KiB per region
    os.close(fd)
    writer = wire.Writer(arena.to_worker[1])
    small = np.arange(16, dtype=np.float32).reshape(4, 4)
    big = np.arange(1024, dtype=np.int64)  # 8 KiB: inline
    text = np.array([[b"x", b"yz"]], dtype=np.object_)
    descs = [writer.tensor("s", small), writer.tensor("b", big), writer.tensor("t", text)]
    assert [d[3] for d in descs] == [wire.ARENA, wire.INLINE, wire.ARENA]
    frame = b"".join(bytes(p) for p in writer.frame({"k": "x", "in": descs}))
    hlen, plen = wire.FRAME.unpack_from(frame)
    header = wire.loads(frame[wire.FRAME.size : wire.FRAME.size + hlen])
    payload = memoryview(frame[wire.FRAME.size + hlen :])
    assert len(payload) == plen == big.nbytes
    got = dict(wire.read_tensor(d, arena.whole, payload, copy=True) for d in header["in"])
    np.testing.assert_array_equal(got["s"], small)
    np.testing.assert_array_equal(got["b"], big)
    assert got["t"].tolist() == [[b"x", b"yz"]]
    arena.close()


def test_empty_tensors_cross_with_their_shapes() -> None:
    """A step that finds nothing (no text lines on a page) returns [0, ...] tensors."""
    fd = os.memfd_create("test-arena")
    os.ftruncate(fd, 1 << 13)
    arena = wire.Arena(fd, 1 << 13)
    os.close(fd)
    writer = wire.Writer(arena.to_worker[1])
    crops = np.zeros((0, 48, 192, 3), dtype=np.uint8)
    texts = np.array([], dtype=np.object_)
    descs = [writer.tensor("crops", crops), writer.tensor("texts", texts)]
    frame = b"".join(bytes(p) for p in writer.frame({"k": "x", "in": descs}))
    hlen, _ = wire.FRAME.unpack_from(frame)
    header = wire.loads(frame[wire.FRAME.size : wire.FRAME.size + hlen])
    payload = memoryview(frame[wire.FRAME.size + hlen :])
    got = dict(wire.read_tensor(d, arena.whole, payload, copy=True) for d in header["in"])
    assert got["crops"].shape == (0, 48, 192, 3) and got["crops"].dtype == np.uint8
    assert got["texts"].shape == (0,)
    arena.close()


def test_custom_metrics_render_as_prometheus_text() -> None:
    m = CustomMetrics()
    family = {"name": "hits_total", "desc": "Hits", "kind": "counter"}
    m.apply("a", {**family, "op": "family"})
    m.apply("a", {**family, "op": "inc", "v": 2, "labels": {"model": "a"}})
    m.apply("a", {**family, "op": "inc", "v": 1.5, "labels": {"model": "a"}})
    m.apply("a", {"name": "bad name", "op": "inc", "v": 1})  # not a metric name: ignored
    m.restarts[("a", "1")] = 2
    text = m.render()
    assert "# TYPE hits_total counter" in text
    assert 'hits_total{model="a"} 3.5' in text
    assert 'conveyor_python_worker_restarts_total{model="a",version="1"} 2' in text
    assert "bad name" not in text
