"""Python model workers under failure: a worker that crashes, hangs or is killed -9 fails
only what it was executing and is replaced; nothing is left in /dev/shm after a stop or a
SIGKILL of the server; a model set whose arenas exceed Kubernetes' 64 MB /dev/shm serves
in one (a private tmpfs of that size on /dev/shm, in a mount namespace of its own)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from tests.e2e.test_python_models import MODELS
from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

SLOW_MODEL = """
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.05)
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]
            )
            for r in requests
        ]
"""


def slow_model(repo: Path, name: str, instances: int, arena: int = 16 << 20) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(SLOW_MODEL)
    (repo / name / "config.yaml").write_text(
        f"backend: python\nmax_batch_size: 0\n"
        f"input: [{{name: IN, data_type: TYPE_FP32, dims: [-1]}}]\n"
        f"output: [{{name: OUT, data_type: TYPE_FP32, dims: [-1]}}]\n"
        f"instance_group: [{{count: {instances}}}]\n"
        f"parameters: {{shm_arena_bytes: '{arena}'}}\n"
    )


def infer(server: ServerProcess, model: str, body: dict[str, object]) -> tuple[int, dict]:
    status, _, data = server.request("POST", f"/v2/models/{model}/infer", json.dumps(body).encode())
    return status, json.loads(data)


def mode(m: int) -> dict[str, object]:
    return {"inputs": [{"name": "MODE", "shape": [1, 1], "datatype": "INT32", "data": [m]}]}


def wait_for(condition: Callable[[], object], timeout_s: float = 60.0) -> None:
    """Poll until `condition()` holds; the deadline only bounds a hang."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not reached in {timeout_s:g} s"
        time.sleep(0.02)


def wait_ready(server: ServerProcess, model: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.request("GET", f"/v2/models/{model}/ready")[0] == 200:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{model} not ready again:\n{server.log()}")


def workers(server: ServerProcess, model: str = "") -> list[psutil.Process]:
    """The server's worker processes (of `model`, when given)."""
    assert server.proc is not None
    found = []
    for p in psutil.Process(server.proc.pid).children(recursive=True):
        cmd = p.cmdline()
        if any("_boot.py" in part for part in cmd) and (not model or f"/{model}/" in cmd[-1]):
            found.append(p)
    return found


def mappings(procs: list[psutil.Process]) -> list[str]:
    """The shared files the processes map (a /dev/shm name would outlive a SIGKILL; the
    arena is a memfd, which dies with its last process). Read from our own processes'
    maps, not from /dev/shm, which other programs on the machine also use."""
    found = []
    for p in procs:
        with open(f"/proc/{p.pid}/maps") as maps:
            paths = [line.split(maxsplit=5)[-1].strip() for line in maps]
            found += [path for path in paths if "/dev/shm/" in path or "memfd:" in path]
    return found


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(MODELS / "faulty", root / "faulty")
    slow_model(root, "slow", instances=2)
    return root


def test_crash_and_hang_fail_their_request_then_the_model_answers_again(
    repo: Path, tmp_path: Path
) -> None:
    server = ServerProcess(repo, log_dir=tmp_path).start()
    try:
        status, body = infer(server, "faulty", mode(5))  # the worker kills itself
        assert status == 503, body
        assert "faulty" in body["error"] and "killed by SIGKILL" in body["error"], body
        wait_ready(server, "faulty")
        assert infer(server, "faulty", mode(0))[0] == 200
        status, body = infer(server, "faulty", mode(4))  # hangs: killed after 3 s
        assert status == 503 and "did not finish executing within 3 s" in body["error"], body
        wait_ready(server, "faulty")
        assert infer(server, "faulty", mode(0))[0] == 200
        import urllib.request

        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        text = urllib.request.urlopen(url).read().decode()
        assert 'conveyor_python_worker_restarts_total{model="faulty",version="1"} 2' in text
    finally:
        assert server.stop() == 0, server.log()


def test_kill_9_under_load_fails_only_in_flight_requests(repo: Path, tmp_path: Path) -> None:
    server = ServerProcess(repo, log_dir=tmp_path).start()
    body = {"inputs": [{"name": "IN", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()
    started = threading.Barrier(5)

    def client() -> None:
        started.wait()
        for _ in range(25):
            outcome = infer(server, "slow", body)
            with lock:
                results.append(outcome)

    try:
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        started.wait()
        wait_for(lambda: len(results) >= 10)  # under load
        victim = workers(server, "slow")[0]
        victim.send_signal(signal.SIGKILL)
        for t in threads:
            t.join(120)
        failed = [b for s, b in results if s != 200]
        # one instance executes one request at a time (max_batch_size 0): at most one lost
        assert len(results) == 100 and len(failed) <= 1, failed
        for b in failed:
            assert "killed by SIGKILL" in b["error"] and "slow" in b["error"], b
        wait_ready(server, "slow")
        assert not victim.is_running()
        assert len(workers(server, "slow")) == 2
        assert infer(server, "slow", body)[0] == 200
    finally:
        assert server.stop() == 0, server.log()


def test_no_segment_left_after_stop_or_sigkill(repo: Path, tmp_path: Path) -> None:
    server = ServerProcess(repo, log_dir=tmp_path).start()
    try:
        procs = workers(server)
        assert len(procs) == 3  # faulty: 1 instance, slow: 2
        assert server.proc is not None
        mapped = mappings([psutil.Process(server.proc.pid), *procs])
        assert mapped and all(m.startswith("/memfd:conveyor-") for m in mapped), mapped
    finally:
        assert server.stop() == 0
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, alive

    server = ServerProcess(repo, log_dir=tmp_path).start()
    try:
        procs = workers(server)
        assert len(procs) == 3
    finally:
        assert server.proc is not None
        server.proc.kill()  # no cleanup code runs in the server
        server.proc.wait()
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, alive  # each worker exits when its socket to the server closes
    server = ServerProcess(repo, log_dir=tmp_path).start()  # and it starts again
    try:
        assert infer(server, "faulty", mode(0))[0] == 200
    finally:
        assert server.stop() == 0


def _can_mount_private_shm() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64m tmpfs /dev/shm"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_private_shm(), reason="needs root and mount namespaces")
def test_models_whose_arenas_exceed_64mb_serve_in_a_64mb_dev_shm(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for i in range(3):  # 3 models x 2 instances x 24 MiB arenas = 144 MiB > 64 MiB
        slow_model(repo, f"m{i}", instances=2, arena=24 << 20)
    wrap = (
        "unshare", "-m", "sh", "-c",
        'mount -t tmpfs -o size=64m tmpfs /dev/shm && exec "$@"', "sh",
    )  # fmt: skip
    server = ServerProcess(repo, log_dir=tmp_path, wrap=wrap).start()
    try:
        n = 2_500_000  # 10 MB each way: through the arena
        data = list(range(n))
        body = {"inputs": [{"name": "IN", "shape": [n], "datatype": "FP32", "data": data}]}
        for i in range(3):
            status, answer = infer(server, f"m{i}", body)
            assert status == 200, answer
            assert answer["outputs"][0]["shape"] == [n]
            assert answer["outputs"][0]["data"][-1] == n - 1
    finally:
        assert server.stop() == 0, server.log()


FINALIZE_MODEL = """
import os
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([]) for _ in requests]

    def finalize(self):
        with open(os.path.join(pb_utils.get_model_dir(), "finalized"), "a") as f:
            f.write("x")
"""


def test_finalize_runs_when_the_server_stops(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "fin" / "1").mkdir(parents=True)
    (repo / "fin" / "1" / "model.py").write_text(FINALIZE_MODEL)
    (repo / "fin" / "config.yaml").write_text(
        "backend: python\ninput: [{name: X, data_type: TYPE_FP32, dims: [1]}]\n"
        "output: []\ninstance_group: [{count: 2}]\n"
    )
    server = ServerProcess(repo, log_dir=tmp_path).start()
    procs = workers(server)
    assert server.stop() == 0, server.log()
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive
    assert (repo / "fin" / "1" / "finalized").read_text() == "xx"  # once per instance


def test_reloading_a_python_model_switches_to_the_new_code(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    slow_model(repo, "m", instances=1)
    server = ServerProcess(
        repo, "--model-control-mode", "explicit", "--load-model", "m", log_dir=tmp_path
    ).start()
    body = {"inputs": [{"name": "IN", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}
    try:
        assert infer(server, "m", body)[1]["outputs"][0]["data"] == [1, 2]
        old = workers(server, "m")
        code = (repo / "m" / "1" / "model.py").read_text()
        (repo / "m" / "1" / "model.py").write_text(
            code.replace(".as_numpy())", ".as_numpy() * 10)")
        )
        status, _, data = server.request("POST", "/v2/repository/models/m/load", b"{}")
        assert status == 200, data
        status, answer = infer(server, "m", body)
        assert status == 200 and answer["outputs"][0]["data"] == [10, 20], answer
        _, alive = psutil.wait_procs(old, timeout=30)  # the old worker was stopped
        assert not alive
    finally:
        assert server.stop() == 0, server.log()


SLEEPER = """
import os
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        here = pb_utils.get_model_dir()
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            name = f"{float(x[0]):g}"
            open(os.path.join(here, "started-" + name), "w").close()
            while not os.path.exists(os.path.join(here, "go-" + name)):  # the test's cue
                time.sleep(0.005)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x.copy())]))
        return out
"""

CALLER = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X")
            answer = pb_utils.InferenceRequest(
                model_name="sleeper", requested_output_names=["Y"], inputs=[x]
            ).exec()
            out.append(pb_utils.InferenceResponse(
                [pb_utils.get_output_tensor_by_name(answer, "Y")]))
        return out
"""

DRIP = """
import os
import threading
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        here = pb_utils.get_model_dir()
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy().copy()
            sender = r.get_response_sender()

            def answer(sender=sender, x=x):
                while not os.path.exists(os.path.join(here, "answer")):  # the test's cue
                    time.sleep(0.005)
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x)]),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

            threading.Thread(target=answer, daemon=True).start()
        open(os.path.join(here, "executed"), "w").close()
        return None
"""

CRASHY = """
import os
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        mark = os.path.join(pb_utils.get_model_dir(), "started")
        if os.path.exists(mark):
            raise RuntimeError("the second initialize fails")
        open(mark, "w").close()

    def execute(self, requests):
        os._exit(3)
"""


def python_model(repo: Path, name: str, code: str, extra: str = "") -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(code)
    (repo / name / "config.yaml").write_text(
        "backend: python\ninput: [{name: X, data_type: TYPE_FP32, dims: [1]}]\n"
        f"output: [{{name: Y, data_type: TYPE_FP32, dims: [1]}}]\n{extra}"
    )


def x_body(value: float) -> dict[str, object]:
    return {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [value]}]}


@pytest.mark.slow
def test_a_bls_answer_never_reaches_the_worker_that_replaced_its_caller(tmp_path: Path) -> None:
    """A's worker is killed while its BLS call runs; B, on the new worker, is BLS call 1
    again: A's late answer, which comes while B's call is pending, must not become B's.
    The sleeper answers each call when the test says so (a file per input value)."""
    repo = tmp_path / "repo"
    python_model(repo, "sleeper", SLEEPER, "instance_group: [{count: 2}]\n")
    python_model(repo, "caller", CALLER)
    sleeper = repo / "sleeper" / "1"
    server = ServerProcess(repo, log_dir=tmp_path).start()
    try:
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(infer, server, "caller", x_body(1.0))
            wait_for((sleeper / "started-1").exists)  # A's BLS call is executing
            workers(server, "caller")[0].send_signal(signal.SIGKILL)
            status, body = a.result(60)
            assert status == 503 and "killed by SIGKILL" in body["error"], body
            wait_ready(server, "caller")
            b = pool.submit(infer, server, "caller", x_body(2.0))
            wait_for((sleeper / "started-2").exists)  # B's BLS call (call 1 again) pending
            (sleeper / "go-1").touch()  # A's late answer comes now
            # once the server has it, A's sleeper request is over: only B's executes
            wait_for(lambda: instances_busy(server, "sleeper") == 1)
            assert not b.done()
            (sleeper / "go-2").touch()
            status, body = b.result(60)
        assert status == 200 and body["outputs"][0]["data"] == [2.0], body
    finally:
        assert server.stop() == 0, server.log()


def instances_busy(server: ServerProcess, model: str) -> float:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("conveyor_instances_busy{") and f'model="{model}"' in line:
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no conveyor_instances_busy for {model}")


def test_unloading_waits_for_a_decoupled_request_still_answering(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    python_model(repo, "drip", DRIP, "model_transaction_policy: {decoupled: true}\n")
    drip = repo / "drip" / "1"
    server = ServerProcess(
        repo, "--model-control-mode", "explicit", "--load-model", "drip", log_dir=tmp_path
    ).start()
    try:
        with ThreadPoolExecutor(2) as pool:
            caller = pool.submit(infer, server, "drip", x_body(1.5))
            wait_for((drip / "executed").exists)  # its execute has returned; no answer yet
            unload = pool.submit(server.request, "POST", "/v2/repository/models/drip/unload", b"{}")
            # unloading has begun (the model takes no new requests) and waits for it
            wait_for(lambda: server.request("GET", "/v2/models/drip/ready")[0] != 200)
            assert not caller.done() and not unload.done()
            (drip / "answer").touch()  # its answer comes only now
            status, body = caller.result(60)
            assert status == 200, body  # drained, not cut off
            assert body["outputs"][0]["data"] == [1.5]
            status, _, data = unload.result(60)
            assert status == 200, data
    finally:
        assert server.stop() == 0, server.log()


def test_requests_waiting_for_a_restart_that_fails_get_the_reason(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    python_model(repo, "crashy", CRASHY)
    server = ServerProcess(repo, log_dir=tmp_path).start()
    try:
        status, body = infer(server, "crashy", x_body(1.0))  # the worker exits; its restart fails
        assert status == 503 and "exited with code 3" in body["error"], body
        # waits for the restart under way, then fails with its reason (not the client's
        # 30 s timeout: a hang would raise here)
        status, body = infer(server, "crashy", x_body(1.0))
        assert status == 503 and "the second initialize fails" in body["error"], body
    finally:
        assert server.stop() == 0, server.log()
