"""Triton ensembles: graph checks against the step models' configs (unit), and an ensemble
of Python and ONNX steps served end to end with tritonclient."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from conveyor.errors import ModelNotFoundError
from conveyor.pipelines.ensemble import order, validate
from conveyor.repository import pbtxt
from conveyor.repository.config import ConfigError, ModelConfig, TensorConfig, parse_config
from tests.e2e.utils import ServerProcess

PIPE = """
name: "pipe"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "pre"
      model_version: -1
      input_map { key: "x" value: "IN" }
      output_map { key: "y" value: "shifted" }
    },
    {
      model_name: "add"
      model_version: -1
      input_map [ { key: "a" value: "shifted" }, { key: "b" value: "IN" } ]
      output_map { key: "sum" value: "OUT" }
    }
  ]
}
"""

PRE_MODEL = """
import numpy as np


class Model:
    def infer(self, inputs):
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x + 1}
"""


def configs() -> dict[str, ModelConfig]:
    tensor = TensorConfig
    return {
        "pre": ModelConfig(
            "pre", max_batch_size=8, inputs=[tensor("x", "FP32", [4])],
            outputs=[tensor("y", "FP32", [4])],
        ),
        "add": ModelConfig(
            "add", max_batch_size=8,
            inputs=[tensor("a", "FP32", [4]), tensor("b", "FP32", [4])],
            outputs=[tensor("sum", "FP32", [4])],
        ),
    }  # fmt: skip


def lookup(models: dict[str, ModelConfig]):  # type: ignore[no-untyped-def]
    def find(name: str, version: str) -> ModelConfig:
        if name not in models:
            raise ModelNotFoundError(f"Request for unknown model: '{name}' is not found")
        return models[name]

    return find


def pipe(text: str = PIPE) -> ModelConfig:
    return parse_config(pbtxt.loads(text), "pipe")


def test_a_valid_graph_orders_its_steps() -> None:
    config = pipe()
    assert [s.model_name for s in config.ensemble_steps] == ["pre", "add"]
    assert config.ensemble_steps[1].input_map == {"a": "shifted", "b": "IN"}
    assert order(config) == [0, 1]
    validate(config, lookup(configs()))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('value: "shifted" }, { key: "b"', 'value: "nowhere" }, { key: "b"'),
         "step 1 ('add'): input 'a' reads ensemble tensor 'nowhere'"),
        (('key: "sum" value: "OUT"', 'key: "sum" value: "other"'),
         "ensemble output 'OUT' is produced by no step"),
        (('key: "x" value: "IN"', 'key: "x" value: "shifted"'), "form a cycle"),
        (('model_name: "add"', 'model_name: "nope"'),
         "step 1 ('nope'): Request for unknown model: 'nope'"),
        (('key: "sum"', 'key: "total"'), "step 1 ('add'): the model has no output 'total'"),
    ],
)  # fmt: skip
def test_graph_errors_name_the_step_and_tensor(change: tuple[str, str], message: str) -> None:
    config = pipe(PIPE.replace(*change))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(config, lookup(configs()))


def test_datatypes_must_agree_between_steps() -> None:
    models = configs()
    models["add"].inputs[0] = TensorConfig("a", "FP64", [4])
    with pytest.raises(ConfigError, match="input 'a' is FP64, but ensemble tensor 'shifted'"):
        validate(pipe(), lookup(models))
    models = configs()
    models["add"].inputs[0] = TensorConfig("a", "FP32", [5])
    with pytest.raises(ConfigError, match=r"input 'a' has shape \[-1, 5\]"):
        validate(pipe(), lookup(models))


def _add_onnx(path: Path) -> None:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["n", 4])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["sum"])], "add", [a, b], [y])
    path.parent.mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("ens") / "repo"
    _add_onnx(repo / "add" / "1" / "model.onnx")
    (repo / "pre" / "1").mkdir(parents=True)
    (repo / "pre" / "1" / "model.py").write_text(PRE_MODEL)
    (repo / "pre" / "config.yaml").write_text(
        "backend: python\nmax_batch_size: 8\ndynamic_batching: {}\n"
        "input: [{name: x, data_type: TYPE_FP32, dims: [4]}]\n"
        "output: [{name: y, data_type: TYPE_FP32, dims: [4]}]\n"
    )
    (repo / "pipe" / "1").mkdir(parents=True)
    (repo / "pipe" / "config.pbtxt").write_text(PIPE)
    (repo / "broken_pipe" / "1").mkdir(parents=True)
    (repo / "broken_pipe" / "config.pbtxt").write_text(
        PIPE.replace('name: "pipe"', 'name: "broken_pipe"').replace(
            'key: "b" value: "IN"', 'key: "c" value: "IN"'
        )
    )
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.mark.e2e
def test_an_ensemble_of_python_and_onnx_steps(
    server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    client = httpclient.InferenceServerClient(server.url)
    request.addfinalizer(client.close)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    tensor = httpclient.InferInput("IN", [2, 4], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("pipe", [tensor], parameters={"step_timings": True})
    np.testing.assert_array_equal(result.as_numpy("OUT"), (x + 1) + x)
    timings = json.loads(result.get_response()["parameters"]["step_timings"])
    assert set(timings) == {"0:pre", "1:add"}
    assert timings["1:add"]["start_us"] >= timings["0:pre"]["total_us"]  # add waited for pre
    for step in timings.values():  # each step's time in its own model's scheduler
        assert step["batch_rows"] == 2 and step["queue_us"] >= 0
        assert 0 < step["compute_us"] <= step["total_us"]
    config = client.get_model_config("pipe")
    assert config["platform"] == "ensemble"
    assert [s["model_name"] for s in config["ensemble_scheduling"]["step"]] == ["pre", "add"]
    assert client.get_model_metadata("pipe")["platform"] == "ensemble"
    import tritonclient.grpc as grpcclient

    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    request.addfinalizer(grpc.close)
    steps = grpc.get_model_config("pipe", as_json=True)["config"]["ensemble_scheduling"]["step"]
    assert steps[1]["input_map"] == {"a": "shifted", "b": "IN"}
    stats = {s["name"]: s for s in client.get_inference_statistics()["model_stats"]}
    assert stats["pre"]["inference_stats"]["success"]["count"] >= 1  # each step's own stats
    assert stats["add"]["inference_stats"]["success"]["count"] >= 1


@pytest.mark.e2e
def test_a_failing_step_names_itself(server: ServerProcess, request: pytest.FixtureRequest) -> None:
    client = httpclient.InferenceServerClient(server.url)
    request.addfinalizer(client.close)
    tensor = httpclient.InferInput("IN", [1, 4], "FP32")
    tensor.set_data_from_numpy(-np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException, match=r"step 0 \('pre'\).*negative input"):
        client.infer("pipe", [tensor])
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    np.testing.assert_array_equal(
        client.infer("pipe", [tensor]).as_numpy("OUT"), np.full((1, 4), 3)
    )


@pytest.mark.e2e
def test_an_invalid_ensemble_fails_to_load_with_the_reason(server: ServerProcess) -> None:
    _, _, body = server.request("POST", "/v2/repository/index", b"{}")
    rows = {r["name"]: r for r in json.loads(body)}
    assert rows["broken_pipe"]["state"] == "UNAVAILABLE"
    assert "step 1 ('add'): the model has no input 'c'" in rows["broken_pipe"]["reason"]
    assert rows["pipe"]["state"] == "READY"


@pytest.mark.e2e
def test_bench_breaks_an_ensemble_down_by_step(server: ServerProcess, tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "conveyor.cli", "bench", f"http://{server.url}", "--model",
           "pipe", "--requests", "30", "--warmup", "0", "--output", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = json.loads(out.read_text())["server"]["steps"]
    assert set(steps) == {"pre", "add"}
    assert steps["pre"]["requests"] >= 30 and steps["pre"]["request_us"] > 0
    assert steps["add"]["compute_infer_us"] > 0
    assert "step pre us: request" in proc.stdout
