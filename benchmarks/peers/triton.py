"""A real Triton Inference Server 2.51 (from the `nvidia-pytriton` wheel) as a peer.

No ONNX Runtime backend is bundled there, so the model is a Python-backend `model.py`
doing the same x·W with numpy, batch by batch (the recipe in shared/PEERS.md: the
bundled `tritonserver` run directly, not through PyTriton's proxy).

Set-up, once (its own virtualenv; numpy < 2 for the backend stub):

    python3 -m venv $CACHE/triton-venv
    $CACHE/triton-venv/bin/pip install "nvidia-pytriton==0.7.0" "numpy<2"

where $CACHE is $CONVEYOR_BENCH_CACHE (default /tmp/conveyor-bench).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from _harness import CACHE, Process
from conveyor.lab.peers import triton_command

HTTP_PORT = 8200

MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils
from pathlib import Path


class TritonPythonModel:
    def initialize(self, args):
        self.w = np.load(Path(__file__).with_name("W.npy"))

    def execute(self, requests):
        xs = [pb_utils.get_input_tensor_by_name(r, "x").as_numpy() for r in requests]
        y = np.concatenate(xs) @ self.w if len(xs) > 1 else xs[0] @ self.w
        out, start = [], 0
        for x in xs:
            end = start + x.shape[0]
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", y[start:end])]))
            start = end
        return out
"""

CONFIG = """
name: "linear"
backend: "python"
max_batch_size: %(max_batch)d
input [ { name: "x", data_type: TYPE_FP32, dims: [ 256 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ 256 ] } ]
dynamic_batching { max_queue_delay_microseconds: %(delay)d }
instance_group [ { count: 1, kind: KIND_CPU } ]
"""


def _venv() -> Path:
    venv = Path(os.environ.get("TRITON_VENV", CACHE / "triton-venv"))
    if not (venv / "bin" / "python").exists():
        raise RuntimeError(f"no Triton virtualenv at {venv}: see benchmarks/peers/triton.py")
    return venv


def start_triton(linear_onnx: Path, delay_us: int = 5000, max_batch: int = 64) -> Process:
    repo = CACHE / "triton-repo"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "linear" / "1").mkdir(parents=True)
    config = CONFIG % {"delay": delay_us, "max_batch": max_batch}
    (repo / "linear" / "config.pbtxt").write_text(config)
    (repo / "linear" / "1" / "model.py").write_text(MODEL_PY)
    w = numpy_helper.to_array(onnx.load(str(linear_onnx)).graph.initializer[0])
    np.save(repo / "linear" / "1" / "W.npy", w)
    return start_triton_repo(repo)


def start_triton_repo(repo: Path) -> Process:
    """tritonserver 2.51 on a repository of python-backend models, HTTP on HTTP_PORT."""
    cmd, env = triton_command(_venv(), repo, HTTP_PORT, HTTP_PORT + 1, HTTP_PORT + 2)
    return Process(cmd, f"http://127.0.0.1:{HTTP_PORT}/v2/health/ready", env=env)
