"""An ensemble while its step models come and go, and while its clients go away: a step
model unloaded mid-request fails that request naming the step; a client that hangs up
cancels the steps still to run. Driven by files the held step waits on, never by time."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.utils import ServerProcess
from tests.pipelines.test_ensemble import _add_onnx

pytestmark = pytest.mark.e2e

CHAIN = """
name: "chain"
platform: "ensemble"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1, 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1, 4 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "hold"
      model_version: -1
      input_map { key: "x" value: "IN" }
      output_map { key: "y" value: "held" }
    },
    {
      model_name: "add"
      model_version: -1
      input_map [ { key: "a" value: "held" }, { key: "b" value: "IN" } ]
      output_map { key: "sum" value: "OUT" }
    }
  ]
}
"""

# x[0, 0] == 1: says it started, then waits until the test writes `go` (at most 60 s)
HOLD = """
import time
from pathlib import Path

HERE = Path(__file__).parent


class Model:
    def infer(self, inputs):
        x = inputs["x"]
        if x[0, 0] == 1:
            (HERE / "started").write_text("")
            deadline = time.monotonic() + 60
            while not (HERE / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return {"y": x}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    repo = tmp_path / "repo"
    _add_onnx(repo / "add" / "1" / "model.onnx")
    (repo / "add" / "config.yaml").write_text("max_batch_size: 0\n")
    (repo / "hold" / "1").mkdir(parents=True)
    (repo / "hold" / "1" / "model.py").write_text(HOLD)
    (repo / "hold" / "config.yaml").write_text(
        "backend: python\nmax_batch_size: 0\n"
        "input: [{name: x, data_type: TYPE_FP32, dims: [1, 4]}]\n"
        "output: [{name: y, data_type: TYPE_FP32, dims: [1, 4]}]\n"
    )
    (repo / "chain" / "1").mkdir(parents=True)
    (repo / "chain" / "config.pbtxt").write_text(CHAIN)
    (tmp_path / "logs").mkdir()
    explicit = ["--model-control-mode", "explicit"]
    for name in ("hold", "add", "chain"):
        explicit += ["--load-model", name]
    proc = ServerProcess(repo, *explicit, log_dir=tmp_path / "logs").start()
    yield proc
    (repo / "hold" / "1" / "go").write_text("")  # nothing left held
    assert proc.stop() == 0, proc.log()


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.exists(), f"{path} never appeared"


def infer(server: ServerProcess, first: float) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.url, network_timeout=120)
    try:
        tensor = httpclient.InferInput("IN", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.full((1, 4), first, np.float32))
        out: np.ndarray = client.infer("chain", [tensor]).as_numpy("OUT")
        return out
    finally:
        client.close()


def count(server: ServerProcess, model: str, field: str = "success") -> int:
    status, _, body = server.request("GET", f"/v2/models/{model}/stats")
    assert status == 200, body
    return int(json.loads(body)["model_stats"][0]["inference_stats"][field]["count"])


def test_a_step_model_unloaded_mid_request_fails_it_naming_the_step(
    server: ServerProcess,
) -> None:
    import threading

    version_dir = server.repo / "hold" / "1"
    errors: list[str] = []

    def held() -> None:
        try:
            infer(server, 1)
        except InferenceServerException as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=held)
    thread.start()
    wait_for(version_dir / "started")  # the request is in step 0
    status, _, body = server.request("POST", "/v2/repository/models/add/unload", b"{}")
    assert status == 200, body
    (version_dir / "go").write_text("")
    thread.join(60)
    assert len(errors) == 1 and "ensemble 'chain' step 1 ('add')" in errors[0], errors
    # the step model alone still serves, and the ensemble does again once 'add' is back
    np.testing.assert_array_equal(
        httpclient.InferenceServerClient(server.url)
        .infer("hold", [_tensor("x", 2.0)])
        .as_numpy("y"),
        np.full((1, 4), 2.0, np.float32),
    )
    status, _, body = server.request("POST", "/v2/repository/models/add/load", b"{}")
    assert status == 200, body
    np.testing.assert_array_equal(infer(server, 3), np.full((1, 4), 6.0, np.float32))


def _tensor(name: str, value: float) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, [1, 4], "FP32")
    tensor.set_data_from_numpy(np.full((1, 4), value, np.float32))
    return tensor


def test_a_client_that_goes_away_cancels_the_steps_to_come(server: ServerProcess) -> None:
    version_dir = server.repo / "hold" / "1"
    body = json.dumps(
        {"inputs": [{"name": "IN", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}
    ).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(
        b"POST /v2/models/chain/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    wait_for(version_dir / "started")  # in step 0 ...
    sock.close()  # ... when the client hangs up
    deadline = time.monotonic() + 60
    while count(server, "chain", "fail") < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert count(server, "chain", "fail") == 1  # the server saw it go, before step 0 ended
    (version_dir / "go").write_text("")
    np.testing.assert_array_equal(infer(server, 2), np.full((1, 4), 4.0, np.float32))
    assert count(server, "add") == 1  # only the request that stayed reached step 1
