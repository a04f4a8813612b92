"""While its models load, the server is live but not ready, and inference is a 503 that
says so (a load balancer retries it on another replica), not "unknown model"."""

from __future__ import annotations

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
    server = ServerProcess(tmp_path / "repo", log_dir=tmp_path / "logs")
    server.start(wait_ready=False)  # listening; its model is still loading
    try:
        assert server.request("GET", "/v2/health/live")[0] == 200
        assert server.request("GET", "/v2/health/ready")[0] == 503
        body = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}'
        status, _, answer = server.request("POST", "/v2/models/slow/infer", body)
        assert status == 503 and b"the server is starting" in answer, answer
        client = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("x", [2], "FP32")
        tensor.set_data_from_numpy(np.array([1, 2], dtype=np.float32))
        with pytest.raises(InferenceServerException, match=r"UNAVAILABLE.*the server is starting"):
            client.infer("slow", [tensor])
        (tmp_path / "repo" / "slow" / "1" / "go").write_text("")
        deadline = time.monotonic() + 60
        while server.request("GET", "/v2/health/ready")[0] != 200:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.02)
        assert server.request("POST", "/v2/models/slow/infer", body)[0] == 200
        assert client.infer("slow", [tensor]).as_numpy("y").tolist() == [1, 2]
        client.close()
    finally:
        assert server.stop() == 0, server.log()
