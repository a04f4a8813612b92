"""The server as a process: bounded queue and timeouts over HTTP, a broken model beside
good ones, graceful shutdown under load, the example client.

The queue tests hold the `gate` model's one instance busy with a request that waits for
the test to open a gate (a file), and wait for what the server reports (instances busy,
requests pending, on /metrics) before each step: no step depends on how fast the
machine runs a model."""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

GATE_MODEL = """
import os
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        gate = os.path.join(pb_utils.get_model_dir(), "open")
        while not os.path.exists(gate):  # held until the test opens the gate
            time.sleep(0.002)
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]
            )
            for r in requests
        ]
"""

GATE_CONFIG = """
backend: python
max_batch_size: 1
dynamic_batching:
  default_queue_policy: {max_queue_size: 1}
input: [{name: X, data_type: TYPE_FP32, dims: [1]}]
output: [{name: Y, data_type: TYPE_FP32, dims: [1]}]
instance_group: [{count: 1}]
"""


def x_body(value: float, **params: object) -> bytes:
    doc: dict[str, object] = {
        "inputs": [{"name": "X", "shape": [1, 1], "datatype": "FP32", "data": [value]}]
    }
    if params:
        doc["parameters"] = params
    return orjson.dumps(doc)


def infer(
    server: ServerProcess, value: float, **params: object
) -> tuple[int, dict[str, str], bytes]:
    return server.request("POST", "/v2/models/gate/infer", x_body(value, **params))


@pytest.fixture(scope="module")
def repo(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`gate`: a Python model with one instance, batch 1 and a queue of 1, whose batches
    wait for the gate (`gate/1/open`, open unless a test closes it); `broken`: garbage;
    `simple`: the demo model."""
    root = tmp_path_factory.mktemp("repo")
    (root / "gate" / "1").mkdir(parents=True)
    (root / "gate" / "1" / "model.py").write_text(GATE_MODEL)
    (root / "gate" / "1" / "open").touch()
    (root / "gate" / "config.yaml").write_text(GATE_CONFIG)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"\x00not an onnx file")
    shutil.copytree(demo_repo / "simple", root / "simple")
    return root


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    proc.stop()


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """The sum of `name`'s samples for the gate model (and `labels`), from /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", server.metrics_port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    wanted = [f'{k}="{v}"' for k, v in {"model": "gate", **labels}.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(w in line for w in wanted)
    )


def busy(server: ServerProcess) -> float:
    return metric(server, "conveyor_instances_busy")


def pending(server: ServerProcess) -> float:
    return metric(server, "conveyor_pending_requests")


def cancelled(server: ServerProcess) -> float:
    return metric(server, "conveyor_request_failure_total", reason="cancelled")


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll until `condition()` holds; the deadline only bounds a hang."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not reached in {timeout_s:g} s"
        time.sleep(0.02)


@contextmanager
def instance_busy(server: ServerProcess, repo: Path) -> Iterator[None]:
    """For the block, the gate model's one instance executes a request, held at the
    closed gate; after it, the gate opens, that request is answered and the model is
    idle again (nothing executing, nothing queued)."""
    gate = repo / "gate" / "1" / "open"
    gate.unlink()
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(infer, server, 0.0)
        try:
            wait_for(lambda: busy(server) == 1)
            yield
        finally:
            gate.touch()
        assert blocker.result(60)[0] == 200
    wait_for(lambda: busy(server) == 0 and pending(server) == 0)


def test_broken_model_is_reported_and_the_others_serve(server: ServerProcess) -> None:
    index = {r["name"]: r for r in orjson.loads(server.request("POST", "/v2/repository/index")[2])}
    assert index["simple"]["state"] == "READY" and index["gate"]["state"] == "READY"
    assert index["broken"]["state"] == "UNAVAILABLE"
    assert "cannot load" in index["broken"]["reason"]
    status, _, raw = server.request("GET", "/v2/models/broken/ready")
    assert status == 503 and "not ready" in orjson.loads(raw)["error"]
    assert "model 'broken' failed to load" in server.log()


def test_full_queue_answers_503_with_retry_after(server: ServerProcess, repo: Path) -> None:
    with ThreadPoolExecutor(1) as pool:
        with instance_busy(server, repo):
            queued = pool.submit(infer, server, 1.0)  # takes the queue's one place
            wait_for(lambda: pending(server) == 1)
            status, headers, raw = infer(server, 2.0)  # no room: answered at once
            assert status == 503 and headers.get("retry-after") == "1"
            assert "is full" in orjson.loads(raw)["error"]
        assert queued.result(60)[0] == 200  # served once the instance was free


def test_request_timeout_in_queue(server: ServerProcess, repo: Path) -> None:
    with instance_busy(server, repo):
        status, _, raw = infer(server, 1.0, timeout=1000)  # 1 ms, queued behind the blocker
    assert status == 503 and "timed out after" in orjson.loads(raw)["error"]


def test_a_client_that_hangs_up_leaves_the_queue(server: ServerProcess, repo: Path) -> None:
    before = cancelled(server)
    body = x_body(1.0)
    with instance_busy(server, repo):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                b"POST /v2/models/gate/infer HTTP/1.1\r\nhost: x\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            wait_for(lambda: pending(server) == 1)  # received and queued behind the blocker
        # hung up: the request leaves the queue, counted as cancelled
        wait_for(lambda: cancelled(server) == before + 1 and pending(server) == 0)
    assert infer(server, 2.0)[0] == 200


DEADLINE_S = 5.0  # ample to reach the queue through the front; it expires there


def test_a_grpc_deadline_reaches_the_queue_through_the_front(
    server: ServerProcess, repo: Path
) -> None:
    import grpc

    from conveyor.grpc import inference_pb2 as pb
    from conveyor.grpc import inference_pb2_grpc as pb_grpc

    req = pb.ModelInferRequest(model_name="gate")
    req.inputs.add(name="X", datatype="FP32", shape=[1, 1])
    req.raw_input_contents.append(np.ones((1, 1), np.float32).tobytes())
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(req, timeout=60)  # connected and warm

        def expire() -> grpc.StatusCode:
            try:
                stub.ModelInfer(req, timeout=DEADLINE_S)
            except grpc.RpcError as exc:
                return exc.code()  # type: ignore[no-any-return]
            return grpc.StatusCode.OK

        before = cancelled(server)
        with ThreadPoolExecutor(1) as pool, instance_busy(server, repo):
            code = pool.submit(expire)
            wait_for(lambda: pending(server) == 1)  # in the queue, behind the blocker
            assert code.result(60) == grpc.StatusCode.DEADLINE_EXCEEDED
            wait_for(lambda: cancelled(server) == before + 1 and pending(server) == 0)


def test_example_client(server: ServerProcess, demo_repo: Path, tmp_path: Path) -> None:
    demo = ServerProcess(demo_repo, log_dir=tmp_path).start()
    try:
        out = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "client.py"), "--url", f"http://{demo.url}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    finally:
        assert demo.stop() == 0
    assert "mlp (JSON): output probabilities shape [2, 10]" in out
    assert "resnet (binary): 602112 bytes in, logits shape [1, 1000]" in out


def unread(server_port: int, client: socket.socket) -> int | None:
    """Bytes the client sent that the server has not read yet: its end's receive queue,
    from /proc/net/tcp (None while the kernel lists no such connection)."""
    client_port = client.getsockname()[1]
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
            if (local, remote) == (server_port, client_port):
                return int(fields[4].split(":")[1], 16)
    return None


def test_sigterm_finishes_in_flight_requests_and_exits_0(repo: Path, tmp_path: Path) -> None:
    """Two requests are half-sent when SIGTERM arrives: both still get their answer."""
    proc = ServerProcess(repo, log_dir=tmp_path).start()
    socks = []
    for i in range(2):
        body = x_body(float(i))
        head = (
            f"POST /v2/models/gate/infer HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        s = socket.create_connection(("127.0.0.1", proc.port))
        s.sendall(head + body[:10])
        socks.append((s, body[10:]))
    # the server has read both halves (nothing left in its receive queues): both are
    # requests in flight when the signal comes
    wait_for(lambda: all(unread(proc.port, s) == 0 for s, _ in socks))
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    wait_for(proc.request_fails)  # no longer accepting
    answers = []
    for s, rest in socks:
        s.sendall(rest)
        answers.append(s.makefile("rb").readline())
        s.close()
    assert answers == [b"HTTP/1.1 200 OK\r\n"] * 2
    assert proc.proc.wait(30) == 0, proc.log()
    assert "shutting down" in proc.log() and "stopped" in proc.log()


@pytest.mark.parametrize("busy", ["--http-port", "--grpc-port"])
def test_a_port_in_use_is_a_clean_exit(busy: str, demo_repo: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = {"--http-port": "0", "--grpc-port": "0", "--metrics-port": "0"}
        ports[busy] = str(taken.getsockname()[1])
        proc = subprocess.run(
            [sys.executable, "-m", "conveyor.cli", "serve", str(demo_repo), "--host", "127.0.0.1"]
            + [arg for item in ports.items() for arg in item],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert "cannot start" in proc.stderr and "Traceback" not in proc.stderr
