"""Conveyor's native pipelines: Python functions as steps (no model to declare) and a
branch on a tensor's value, beside a real ONNX model step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
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
import yaml


def scale(inputs):
    if (inputs["x"] < 0).any():
        raise ValueError("scale wants x >= 0")
    return {"y": inputs["x"] * 10, "pid": np.array([os.getpid()])}


def negate(inputs):
    return {"y": -inputs["x"]}
"""


# a function step with two worker processes; `hold` keeps X == 1 until told to go
FANOUT = """
platform: pipeline
max_batch_size: 0
input: [{name: X, data_type: TYPE_INT32, dims: [1]}]
output: [{name: PID, data_type: TYPE_INT64, dims: [1]}]
pipeline:
  steps:
    - {function: "held.py:hold", instances: 2, inputs: {x: X}, outputs: {pid: PID}}
"""

HELD = """
import os
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).parent


def hold(inputs):
    if int(inputs["x"][0]) == 1:
        (HERE / "started").write_text("")
        deadline = time.monotonic() + 60
        while not (HERE / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return {"pid": np.array([os.getpid()], dtype=np.int64)}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("native") / "repo"
    _add_onnx(repo / "add" / "1" / "model.onnx")
    (repo / "route" / "1").mkdir(parents=True)
    (repo / "route" / "1" / "steps.py").write_text(STEPS)
    (repo / "route" / "config.yaml").write_text(PIPELINE)
    (repo / "fanout" / "1").mkdir(parents=True)
    (repo / "fanout" / "1" / "held.py").write_text(HELD)
    (repo / "fanout" / "config.yaml").write_text(FANOUT)
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


def test_bench_breaks_a_pipeline_down_with_its_function_steps(
    server: ServerProcess, tmp_path: Path
) -> None:
    """`conveyor bench` on a native pipeline: the model steps and the function steps that
    ran (under their statistics names, `pipeline:function`), a BYTES-free input here."""
    import json
    import subprocess
    import sys

    out = tmp_path / "result.json"
    data = tmp_path / "inputs.json"
    data.write_text(json.dumps({"X": [[1, 2, 3, 4]], "MODE": [[1]]}))
    cmd = [sys.executable, "-m", "conveyor.cli", "bench", f"http://{server.url}", "--model",
           "route", "--input-data", str(data), "--requests", "20", "--warmup", "0",
           "--live", "off", "--output", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = json.loads(out.read_text())["server"]["steps"]
    assert list(steps) == ["route:scale", "add", "route:negate"]
    assert steps["route:scale"]["requests"] >= 20 and steps["route:scale"]["compute_infer_us"] > 0
    assert steps["add"]["requests"] >= 20
    assert steps["route:negate"]["requests"] == 0  # MODE 1: the other branch
    assert "step route:scale us: request" in proc.stdout


def test_a_function_step_with_two_instances_runs_on_both(server: ServerProcess) -> None:
    """While one worker holds a request, the next goes to the other worker process."""
    import threading
    import time

    version_dir = server.repo / "fanout" / "1"

    def pid_of(x: int) -> int:
        client = httpclient.InferenceServerClient(server.url, network_timeout=120)
        try:
            tensor = httpclient.InferInput("X", [1], "INT32")
            tensor.set_data_from_numpy(np.array([x], dtype=np.int32))
            return int(client.infer("fanout", [tensor]).as_numpy("PID")[0])
        finally:
            client.close()

    held: list[int] = []
    first = threading.Thread(target=lambda: held.append(pid_of(1)))
    first.start()
    deadline = time.monotonic() + 60
    while not (version_dir / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (version_dir / "started").exists()
    other = pid_of(0)  # the held worker is busy: the other one answers
    (version_dir / "go").write_text("")
    first.join(60)
    assert held and held[0] != other


def test_function_step_instances_are_checked() -> None:
    bad = FANOUT.replace("instances: 2", "instances: 0")
    with pytest.raises(ConfigError, match="'instances' is for function steps, 1 to 64"):
        parse_config(yaml.safe_load(bad), "fanout")
    on_a_model = PIPELINE.replace("model: add", "model: add\n      instances: 2")
    with pytest.raises(ConfigError, match="'instances' is for function steps"):
        parse_config(yaml.safe_load(on_a_model), "route")
