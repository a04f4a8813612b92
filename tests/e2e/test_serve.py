"""The server as a process: bounded queue and timeouts over HTTP, a broken model beside
good ones, graceful shutdown under load, the example client."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

SLOW_CONFIG = """
name: slow
max_batch_size: 1
dynamic_batching:
  default_queue_policy: {max_queue_size: 1}
instance_group: [{count: 1, kind: KIND_CPU}]
parameters: {intra_op_thread_count: 1}
"""


def image_body(seed: int = 0, **params: object) -> tuple[bytes, dict[str, str]]:
    x = np.random.default_rng(seed).random((1, 3, 224, 224), dtype=np.float32)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "shape": [1, 3, 224, 224],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": params,
        }
    )
    return header + x.tobytes(), {"inference-header-content-length": str(len(header))}


@pytest.fixture(scope="module")
def repo(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`slow`: the ResNet with one instance, batch 1 and a queue of 1; `broken`: garbage;
    `simple`: the demo model."""
    root = tmp_path_factory.mktemp("repo")
    (root / "slow" / "1").mkdir(parents=True)
    # a hard link, not a symlink: a model file linking out of the repository is refused
    os.link(demo_repo / "resnet" / "1" / "model.onnx", root / "slow" / "1" / "model.onnx")
    (root / "slow" / "config.yaml").write_text(SLOW_CONFIG)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"\x00not an onnx file")
    shutil.copytree(demo_repo / "simple", root / "simple")
    return root


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("logs")).start()
    yield proc
    proc.stop()


def test_broken_model_is_reported_and_the_others_serve(server: ServerProcess) -> None:
    index = {r["name"]: r for r in orjson.loads(server.request("POST", "/v2/repository/index")[2])}
    assert index["simple"]["state"] == "READY" and index["slow"]["state"] == "READY"
    assert index["broken"]["state"] == "UNAVAILABLE"
    assert "cannot load" in index["broken"]["reason"]
    status, _, raw = server.request("GET", "/v2/models/broken/ready")
    assert status == 503 and "not ready" in orjson.loads(raw)["error"]
    assert "model 'broken' failed to load" in server.log()


def test_full_queue_answers_503_with_retry_after(server: ServerProcess) -> None:
    def call(i: int) -> tuple[int, dict[str, str]]:
        body, headers = image_body(i)
        status, resp_headers, _ = server.request("POST", "/v2/models/slow/infer", body, headers)
        return status, resp_headers

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, range(12)))
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 503}
    assert statuses.count(503) >= 1 and statuses.count(200) >= 2
    assert all(h.get("retry-after") == "1" for s, h in results if s == 503)


def test_request_timeout_in_queue(server: ServerProcess) -> None:
    body, headers = image_body()
    blocker = threading.Thread(
        target=server.request, args=("POST", "/v2/models/slow/infer", body, headers)
    )
    blocker.start()
    time.sleep(0.005)
    timed_body, timed_headers = image_body(1, timeout=1000)  # 1 ms
    status, _, raw = server.request("POST", "/v2/models/slow/infer", timed_body, timed_headers)
    blocker.join()
    if status == 200:  # the blocker had already finished: nothing was queued
        pytest.skip("the machine ran the blocking request before the timed one arrived")
    assert status == 503 and "timed out after" in orjson.loads(raw)["error"]


def cancelled(server: ServerProcess) -> float:
    """conveyor_request_failure_total{model="slow", reason="cancelled"}"""
    conn = http.client.HTTPConnection("127.0.0.1", server.metrics_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("conveyor_request_failure_total")
        and 'model="slow"' in line
        and 'reason="cancelled"' in line
    )


def wait_for_cancelled(server: ServerProcess, count: float, timeout_s: float = 3.0) -> float:
    deadline = time.monotonic() + timeout_s
    while cancelled(server) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return cancelled(server)


def blocked(server: ServerProcess, attempt: object) -> bool:
    """Run `attempt()` while the slow model's one instance is busy with another request;
    True once the server counted a cancelled request. On a loaded machine the timing can
    miss (the request may not reach the queue before it is given up), so a few tries."""
    before = cancelled(server)
    for _ in range(3):
        body, headers = image_body()
        blocker = threading.Thread(
            target=server.request, args=("POST", "/v2/models/slow/infer", body, headers)
        )
        blocker.start()
        time.sleep(0.005)
        attempt()  # type: ignore[operator]
        blocker.join()
        if wait_for_cancelled(server, before + 1) > before:
            return True
    return False


def test_a_client_that_hangs_up_leaves_the_queue(server: ServerProcess) -> None:
    def hang_up() -> None:
        gone_body, gone_headers = image_body(1)
        head = "".join(f"{k}: {v}\r\n" for k, v in gone_headers.items())
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                f"POST /v2/models/slow/infer HTTP/1.1\r\nhost: x\r\n{head}"
                f"content-length: {len(gone_body)}\r\n\r\n".encode()
                + gone_body
            )
            time.sleep(0.02)  # received and queued behind the blocker (~40 ms): hang up

    assert blocked(server, hang_up)
    status, _, _ = server.request("POST", "/v2/models/slow/infer", *image_body(2))
    assert status == 200


def test_a_grpc_deadline_reaches_the_queue_through_the_front(server: ServerProcess) -> None:
    import grpc

    from conveyor.grpc import inference_pb2 as pb
    from conveyor.grpc import inference_pb2_grpc as pb_grpc

    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    req = pb.ModelInferRequest(model_name="slow")
    req.inputs.add(name="images", datatype="FP32", shape=[1, 3, 224, 224])
    req.raw_input_contents.append(x.tobytes())
    codes = []
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(req, timeout=30)  # connected and warm

        def expire() -> None:
            try:
                stub.ModelInfer(req, timeout=0.02)  # expires in the queue behind the blocker
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())

        assert blocked(server, expire)
    assert codes[-1] == grpc.StatusCode.DEADLINE_EXCEEDED


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


def test_sigterm_finishes_in_flight_requests_and_exits_0(repo: Path, tmp_path: Path) -> None:
    """Two requests are half-sent when SIGTERM arrives: both still get their answer."""
    proc = ServerProcess(repo, log_dir=tmp_path).start()
    socks = []
    for i in range(2):
        body, headers = image_body(i)
        head = (
            "POST /v2/models/slow/infer HTTP/1.1\r\nhost: x\r\n"
            f"content-length: {len(body)}\r\n"
            f"inference-header-content-length: {headers['inference-header-content-length']}"
            "\r\n\r\n"
        ).encode()
        s = socket.create_connection(("127.0.0.1", proc.port))
        s.sendall(head + body[:1000])
        socks.append((s, body[1000:]))
    time.sleep(0.2)
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert proc.request_fails()  # no longer accepting
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
