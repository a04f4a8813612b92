"""The gRPC front process: forwarded bytes, crash recovery, and no orphan left behind."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e


def front_pid(proc: ServerProcess) -> int:
    match = re.findall(r"gRPC .* listening on .*front process pid (\d+)", proc.log())
    assert match, proc.log()
    return int(match[-1])


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is gone too
    except FileNotFoundError:
        return True


def wait_for(condition: object, timeout_s: float = 60.0) -> bool:
    """Poll until `condition()` holds; the deadline only bounds a hang (a process to start
    or to notice its parent is gone, on a loaded machine)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def simple_infer(url: str) -> np.ndarray:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        x = grpcclient.InferInput(name, [1, 16], "INT32")
        x.set_data_from_numpy(a)
        inputs.append(x)
    client = grpcclient.InferenceServerClient(url)
    try:
        out: np.ndarray = client.infer("simple", inputs).as_numpy("OUTPUT0")
    finally:
        client.close()
    return out


@pytest.fixture
def server(demo_repo: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        demo_repo,
        "--model-control-mode",
        "explicit",
        "--load-model",
        "simple",
        log_dir=tmp_path,
    ).start()
    yield proc
    proc.stop()


def test_a_crashed_front_is_restarted_on_the_same_port(server: ServerProcess) -> None:
    pid = front_pid(server)
    np.testing.assert_array_equal(simple_infer(server.grpc_url)[0], np.arange(16) * 2)
    os.kill(pid, signal.SIGKILL)  # the front is our server's child: we started both
    assert wait_for(lambda: "gRPC front restarted" in server.log()), server.log()
    assert "exited with code -9; restarting it" in server.log()
    assert front_pid_after_restart(server) != pid
    status, _, _ = server.request("GET", "/v2/health/ready")  # HTTP never stopped
    assert status == 200
    np.testing.assert_array_equal(simple_infer(server.grpc_url)[0], np.arange(16) * 2)
    assert server.stop() == 0


def front_pid_after_restart(proc: ServerProcess) -> int:
    match = re.findall(r"gRPC front restarted: pid (\d+)", proc.log())
    return int(match[-1])


def test_the_front_exits_with_its_server(server: ServerProcess) -> None:
    pid = front_pid(server)
    assert server.proc is not None
    server.proc.kill()  # no graceful stop: the front must notice by itself
    server.proc.wait()
    assert wait_for(lambda: gone(pid)), f"front process {pid} outlived its server"


def test_a_graceful_stop_ends_the_front(server: ServerProcess) -> None:
    pid = front_pid(server)
    assert server.stop() == 0
    assert wait_for(lambda: gone(pid))


def test_malformed_message_is_invalid_argument(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as err:
            call(b"\xff\xff\xff\xff garbage", timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed request message" in (err.value.details() or "")
        missing = channel.unary_unary("/inference.GRPCInferenceService/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as err:
            missing(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    np.testing.assert_array_equal(simple_infer(server.grpc_url)[0], np.arange(16) * 2)
