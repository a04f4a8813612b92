"""Shared pieces of the benchmark scripts: the demo models, wrk as the load client, and
servers started as processes on loopback (stopped by PID).

wrk (Debian package `wrk`) is the client for every HTTP figure: it is written in C,
so on this 2-core machine it takes far less CPU from the server than a Python client.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.utils import ServerProcess  # noqa: E402

CACHE = Path(os.environ.get("CONVEYOR_BENCH_CACHE", Path(tempfile.gettempdir()) / "conveyor-bench"))
T = TypeVar("T")


# the tiny model's request: 1x256 FP32 as V2 JSON (2.7 KB), the same in every script
TINY_BODY = json.dumps(
    {
        "inputs": [
            {
                "name": "x",
                "shape": [1, 256],
                "datatype": "FP32",
                "data": [round(float(v), 6) for v in np.random.default_rng(0).standard_normal(256)],
            }
        ]
    }
).encode()


def bench_json(target: str, *args: str, timeout_s: float = 120) -> dict[str, Any]:
    """Run `conveyor bench TARGET ARGS --live off` and return its JSON result."""
    out = CACHE / f"bench-{os.getpid()}-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "conveyor.cli", "bench", target, *args, "--live", "off"]
    proc = subprocess.run(
        [*cmd, "--output", str(out)], capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def demo_repo() -> Path:
    from conveyor.demo.repository import write_demo_repository

    root = CACHE / "demo-repo"
    write_demo_repository(root)
    return root


def model_repo(name: str, models: dict[str, tuple[str, str]], source: Path) -> Path:
    """A repository under the cache: model name -> (demo model whose ONNX file it links to,
    config.yaml text). Hard links (a symlink out of the repository is refused)."""
    root = CACHE / name
    shutil.rmtree(root, ignore_errors=True)
    for model, (src_model, config) in models.items():
        (root / model / "1").mkdir(parents=True)
        src, dst = source / src_model / "1" / "model.onnx", root / model / "1" / "model.onnx"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy(src, dst)
        (root / model / "config.yaml").write_text(config)
    return root


def conveyor_server(repo: Path, *args: str) -> ServerProcess:
    return ServerProcess(repo, *args, log_dir=CACHE).start()


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    requests: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk time {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk_script(body: bytes, headers: dict[str, str], tag: str = "post") -> Path:
    """A wrk Lua script that POSTs `body` with `headers` (the body in a file beside it)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    body_file = CACHE / f"{tag}-body-{os.getpid()}.bin"
    body_file.write_bytes(body)
    lua = CACHE / f"{tag}-{os.getpid()}.lua"
    header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    lua.write_text(
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        f'wrk.method = "POST"\n{header_lines}'
    )
    return lua


def wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    threads: int = 1,
    timeout_s: float = 2.0,
) -> WrkResult:
    """`timeout_s`: wrk counts a slower answer as a socket error, not in its figures."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    lua = wrk_script(body, headers)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            f"{timeout_s:g}s",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_errors = re.search(r"Socket errors: (.*)", out)
    requests = re.search(r"(\d+) requests in", out)
    if sock_errors:
        print(f"    wrk socket errors: {sock_errors.group(1)}")
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(pct["50"]),
        p90_ms=_ms(pct["90"]),
        p99_ms=_ms(pct["99"]),
        errors=int(errors.group(1)) if errors else 0,
        requests=int(requests.group(1)) if requests else 0,
    )


def answered(url: str, model: str) -> int:
    """Inferences the server at `url` (host:port) has answered for `model` (statistics API)."""
    with urllib.request.urlopen(f"http://{url}/v2/models/{model}/stats", timeout=30) as r:
        return int(json.load(r)["model_stats"][0]["inference_count"])


def served_steady(
    url: str,
    model: str,
    body: bytes,
    headers: dict[str, str],
    clients: int,
    seconds: float,
    timeout_s: float = 30.0,
) -> tuple[float, WrkResult]:
    """Requests/s the server answered in `seconds` of steady closed-loop load (counted by
    the server, from 5 s after wrk starts to 5 s before it stops), and wrk's own result.
    wrk divides by its whole run, which includes filling the pipeline: when latency is a
    sizeable share of the run (big models, many clients), its figure reads low by about
    latency / duration."""
    infer = f"http://{url}/v2/models/{model}/infer"
    done: list[WrkResult] = []
    load = threading.Thread(
        target=lambda: done.append(
            wrk(infer, body, headers, clients, seconds + 10, timeout_s=timeout_s)
        )
    )
    load.start()
    time.sleep(5)
    first, start = answered(url, model), time.perf_counter()
    time.sleep(seconds)
    rate = (answered(url, model) - first) / (time.perf_counter() - start)
    load.join()
    return rate, done[0]


def wait_ready(
    url: str, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {timeout_s}s")


def perf_analyzer_cmd(
    model: str, url: str, protocol: str, concurrency: str, window_ms: int, *extra: str
) -> list[str]:
    """perf_analyzer (scripts/perf_analyzer.sh) at one concurrency: 3 windows of
    `window_ms`, stability not demanded (this machine is noisy), so every run ends."""
    return [
        str(ROOT / "scripts" / "perf_analyzer.sh"),
        "-m",
        model,
        "-i",
        protocol,
        "-u",
        url,
        "--concurrency-range",
        concurrency,
        "-p",
        str(window_ms),
        "--max-trials",
        "3",
        "--stability-percentage",
        "999",
        *extra,
    ]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port} after {timeout_s}s")


class Process:
    """A peer server started as a command; stopped by PID with SIGTERM."""

    def __init__(
        self,
        cmd: list[str],
        ready_url: str | None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        own_session: bool = True,
    ) -> None:
        """Ready when `ready_url` answers, or (no HTTP) when `port` accepts connections.
        `own_session`: a session (and process group) of its own, stopped as a group. Off
        for the null targets: with the kernel's autogroup scheduling a separate session
        is also a separate CPU share, and perf_analyzer 2.51 was seen to hang against a
        null server in another session (memory growing, no result)."""
        self.own_session = own_session
        self.log = open(CACHE / f"peer-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=own_session,
        )
        try:
            if ready_url is not None:
                wait_ready(ready_url, proc=self.proc)
            elif port is not None:
                wait_port(port, self.proc)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None and not self.own_session:
            self.proc.terminate()
        elif self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group we started: its children too
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _tree(pid: int) -> list[Any]:
    """The process and its descendants (gRPC front, Python workers), as psutil sees them."""
    import psutil

    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a server and every process under it."""
    import psutil

    total = 0.0
    for proc in _tree(pid):
        try:
            total += sum(proc.cpu_times()[:2])
        except psutil.Error:
            continue  # gone meanwhile
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of a server and every process under it, MiB."""
    import psutil

    total = 0
    for proc in _tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def median(values: list[float]) -> float:
    return statistics.median(values)


def rotated(items: list[T], round_index: int) -> list[T]:
    """`items` starting at `round_index` (cyclic), so that over the rounds no target
    always runs right after the same one. With a fixed order Conveyor always followed
    Triton (1.5 cores busy at 32 clients), and measured x0.62-0.65 the floor in two such
    runs against x0.75-0.76 in two runs without Triton (session 10)."""
    k = round_index % len(items) if items else 0
    return items[k:] + items[:k]
