"""Conveyor's native pipelines: Python functions as steps (no model to declare) and a
branch on a tensor's value, beside a real ONNX model step."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conveyor.repository.config import ConfigError, parse_config
from tests.e2e.utils import ServerProcess
from tests.pipelines.test_ensemble import _add_onnx

pytestmark = pytest.mark.e2e

PIPELINE = """
platform: pipeline
max_batch_size: 8
input:
  - {name: X, data_type: TYPE_FP32, dims: [4]}
  - {name: MODE, data_type: TYPE_INT32, dims: [1]}
output: [{name: OUT, data_type: TYPE_FP32, dims: [4]}]
pipeline:
  steps:
    - {function: "steps.py:scale", inputs: {x: X}, outputs: {y: scaled}}
    - model: add                      # OUT = 10x + x when MODE is 1
      when: {tensor: MODE, equals: 1}
      inputs: {a: scaled, b: X}
      outputs: {sum: OUT}
    - function: "steps.py:negate"     # OUT = -10x otherwise
      when: {tensor: MODE, not_equals: 1}
      inputs: {x: scaled}
      outputs: {y: OUT}
"""

STEPS = """
import os

import numpy as np


def scale(inputs):
    if (inputs["x"] < 0).any():
        raise ValueError("scale wants x >= 0")
    return {"y": inputs["x"] * 10, "pid": np.array([os.getpid()])}


def negate(inputs):
    return {"y": -inputs["x"]}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("native") / "repo"
    _add_onnx(repo / "add" / "1" / "model.onnx")
    (repo / "route" / "1").mkdir(parents=True)
    (repo / "route" / "1" / "steps.py").write_text(STEPS)
    (repo / "route" / "config.yaml").write_text(PIPELINE)
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def call(server: ServerProcess, x: np.ndarray, mode: int) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.url)
    try:
        inputs = [
            httpclient.InferInput("X", [1, 4], "FP32"),
            httpclient.InferInput("MODE", [1, 1], "INT32"),
        ]
        inputs[0].set_data_from_numpy(x.reshape(1, 4))
        inputs[1].set_data_from_numpy(np.array([[mode]], dtype=np.int32))
        out: np.ndarray = client.infer("route", inputs).as_numpy("OUT")
        return out
    finally:
        client.close()


def test_a_branch_on_a_tensor_value_picks_the_step(server: ServerProcess) -> None:
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(call(server, x, 1), (10 * x + x).reshape(1, 4))
    np.testing.assert_array_equal(call(server, x, 2), (-10 * x).reshape(1, 4))


def test_step_timings_split_queue_and_compute(server: ServerProcess) -> None:
    import json

    client = httpclient.InferenceServerClient(server.url)
    try:
        inputs = [
            httpclient.InferInput("X", [1, 4], "FP32"),
            httpclient.InferInput("MODE", [1, 1], "INT32"),
        ]
        inputs[0].set_data_from_numpy(np.ones((1, 4), np.float32))
        inputs[1].set_data_from_numpy(np.array([[1]], dtype=np.int32))
        result = client.infer("route", inputs, parameters={"step_timings": True})
    finally:
        client.close()
    timings = json.loads(result.get_response()["parameters"]["step_timings"])
    assert len(timings) == 2  # the function step and the model step that ran
    for step in timings.values():  # a function step's worker and a model's scheduler alike
        assert step["queue_us"] >= 0 and 0 < step["compute_us"] <= step["total_us"]


def test_function_steps_have_statistics_and_metrics(server: ServerProcess) -> None:
    import orjson

    call(server, np.ones(4, np.float32), 1)
    status, _, raw = server.request("GET", "/v2/models/stats")
    assert status == 200
    stats = {s["name"]: s for s in orjson.loads(raw)["model_stats"]}
    assert stats["route:scale"]["inference_stats"]["success"]["count"] >= 1
    assert stats["route:scale"]["inference_stats"]["compute_infer"]["ns"] > 0
    status, _, raw = server.request("GET", "/metrics")
    if status == 404:  # metrics on their own port
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics") as r:
            raw = r.read()
    assert 'conveyor_request_success_total{model="route:scale",version="1"}' in raw.decode()


def test_a_failing_function_step_names_itself(server: ServerProcess) -> None:
    with pytest.raises(InferenceServerException, match=r"step 0 \('steps.py:scale'\).*x >= 0"):
        call(server, -np.ones(4, np.float32), 1)
    np.testing.assert_array_equal(call(server, np.ones(4, np.float32), 1), np.full((1, 4), 11))


def test_pipeline_config_errors() -> None:
    def parse(text: str) -> object:
        import yaml

        return parse_config(yaml.safe_load(text), "route")

    with pytest.raises(ConfigError, match="exactly one of 'model' or 'function'"):
        parse("platform: pipeline\npipeline: {steps: [{inputs: {}}]}")
    with pytest.raises(ConfigError, match=r"must be 'FILE\.py:NAME'"):
        parse("platform: pipeline\npipeline: {steps: [{function: steps.txt}]}")
    with pytest.raises(ConfigError, match="one of equals / not_equals"):
        parse("platform: pipeline\npipeline: {steps: [{model: m, when: {tensor: T}}]}")
