"""While its models load, the server is live but not ready, and inference is a 503 that
says so (a load balancer retries it on another replica), not "unknown model"."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

# load() waits until the test writes `go` beside it (at most 60 s)
SLOW = """
import time
from pathlib import Path

import numpy as np


class Model:
    def load(self, context):
        here = Path(context.model_dir)
        deadline = time.monotonic() + 60
        while not (here / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def infer(self, inputs):
        return {"y": inputs["x"]}
"""


def test_inference_before_the_models_load_is_503(tmp_path: Path) -> None:
    (tmp_path / "repo" / "slow" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "slow" / "1" / "model.py").write_text(SLOW)
    (tmp_path / "repo" / "slow" / "config.yaml").write_text(
        "backend: python\nmax_batch_size: 0\n"
        "input: [{name: x, data_type: TYPE_FP32, dims: [2]}]\n"
        "output: [{name: y, data_type: TYPE_FP32, dims: [2]}]\n"
    )
    (tmp_path / "logs").mkdir()
    server = ServerProcess(tmp_path / "repo", log_dir=tmp_path / "logs")  # its request()
    log_path = tmp_path / "logs" / "slow.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor.cli",
                "serve",
                str(tmp_path / "repo"),
                "--host",
                "127.0.0.1",
                "--http-port",
                "0",
                "--grpc-port",
                "0",
                "--metrics-port",
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        port = 0
        while not port and time.monotonic() < deadline:
            found = re.search(r"HTTP .* listening on 127\.0\.0\.1:(\d+)", log_path.read_text())
            port = int(found.group(1)) if found else 0
            time.sleep(0.02)
        assert port, log_path.read_text()
        server.port = port
        assert server.request("GET", "/v2/health/live")[0] == 200
        assert server.request("GET", "/v2/health/ready")[0] == 503
        body = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}'
        status, _, answer = server.request("POST", "/v2/models/slow/infer", body)
        assert status == 503 and b"the server is starting" in answer, answer
        grpc_port = 0
        while not grpc_port and time.monotonic() < deadline:
            found = re.search(r"gRPC .* listening on 127\.0\.0\.1:(\d+)", log_path.read_text())
            grpc_port = int(found.group(1)) if found else 0
            time.sleep(0.02)
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        tensor = grpcclient.InferInput("x", [2], "FP32")
        tensor.set_data_from_numpy(np.array([1, 2], dtype=np.float32))
        with pytest.raises(InferenceServerException, match=r"UNAVAILABLE.*the server is starting"):
            client.infer("slow", [tensor])
        (tmp_path / "repo" / "slow" / "1" / "go").write_text("")
        deadline = time.monotonic() + 60
        while server.request("GET", "/v2/health/ready")[0] != 200:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.02)
        assert server.request("POST", "/v2/models/slow/infer", body)[0] == 200
        assert client.infer("slow", [tensor]).as_numpy("y").tolist() == [1, 2]
        client.close()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log_path.read_text()
