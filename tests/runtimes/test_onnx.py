"""ONNX Runtime backend: session options from the config, execution providers with a
clean fallback to CPU when no GPU provider exists."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conveyor.demo import models
from conveyor.repository.config import InstanceGroup, ModelConfig
from conveyor.runtimes.onnx import OnnxBackend, choose_providers


def test_gpu_kind_falls_back_to_cpu_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    config = ModelConfig("m", instance_group=[InstanceGroup(kind="KIND_GPU")])
    with caplog.at_level(logging.WARNING):
        assert choose_providers(config, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert "asks for KIND_GPU" in caplog.text and "running on CPU" in caplog.text


def test_gpu_providers_are_chosen_when_present() -> None:
    config = ModelConfig(
        "m", instance_group=[InstanceGroup(kind="KIND_AUTO")], gpu_accelerators=["tensorrt"]
    )
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(config, available) == available
    cpu_only = ModelConfig("m", instance_group=[InstanceGroup(kind="KIND_CPU")])
    assert choose_providers(cpu_only, available) == ["CPUExecutionProvider"]


def test_session_options_from_config() -> None:
    config = ModelConfig(
        "m",
        instance_group=[InstanceGroup(count=2)],
        graph_optimization_level=1,
        parameters={"intra_op_thread_count": "3", "inter_op_thread_count": "2"},
    )
    opts = OnnxBackend().session_options(config)
    assert opts.intra_op_num_threads == 3 and opts.inter_op_num_threads == 2
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


def test_intra_op_spinning_from_config() -> None:
    off = OnnxBackend().session_options(ModelConfig("m", parameters={"intra_op_spinning": "false"}))
    assert off.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    on = OnnxBackend().session_options(ModelConfig("m", parameters={"intra_op_spinning": "true"}))
    assert on.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_load_and_run(tmp_path: Path) -> None:
    models.build_linear(tmp_path / "1" / "model.onnx")
    rt = OnnxBackend().load(ModelConfig("linear"), tmp_path / "1", 0)
    assert [(s.name, s.datatype, s.shape) for s in rt.inputs] == [("x", "FP32", (-1, 256))]
    x = np.ones((2, 256), np.float32)
    np.testing.assert_allclose(
        rt.infer({"x": x}, ["y"])["y"], x @ models.linear_weights(), rtol=1e-5
    )
    rt.close()


def test_instances_are_spread_over_the_configured_gpus() -> None:
    config = ModelConfig(
        "m", instance_group=[InstanceGroup(count=3, gpus=[0, 1]), InstanceGroup(count=1)]
    )
    assert [config.instance_gpu(i) for i in range(4)] == [0, 1, 0, None]
