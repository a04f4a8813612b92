"""Start a real `conveyor serve` process on a free loopback port and stop it by PID."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A loopback port free right now (for commands that need a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class ServerProcess:
    def __init__(self, repo: Path, *args: str, log_dir: Path, wrap: tuple[str, ...] = ()) -> None:
        self.repo = repo
        self.args = args
        self.wrap = wrap  # a command that runs the server, e.g. in a namespace of its own
        self.log_path = log_dir / f"server-{os.getpid()}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.grpc_port = 0
        self.metrics_port = 0

    def start(self, timeout_s: float = 60.0, wait_ready: bool = True) -> ServerProcess:
        """Run it; return once it is ready (or, `wait_ready=False`, once its listeners
        are logged: its models may still be loading)."""
        cmd = [
            *self.wrap,
            sys.executable,
            "-m",
            "conveyor.cli",
            "serve",
            str(self.repo),
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
            *self.args,
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            log = self.log()
            match = re.search(r"HTTP .* listening on 127\.0\.0\.1:(\d+)", log)
            # the metrics listener starts after HTTP and gRPC, before the models load
            listening = "metrics (Prometheus) listening" in log
            if match and ("server ready" in log or (listening and not wait_ready)):
                self.port = int(match.group(1))
                grpc_match = re.search(r"gRPC .* listening on 127\.0\.0\.1:(\d+)", log)
                self.grpc_port = int(grpc_match.group(1)) if grpc_match else 0
                metrics = re.search(r"metrics .* listening on 127\.0\.0\.1:(\d+)", log)
                self.metrics_port = int(metrics.group(1)) if metrics else 0
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"server not ready in {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def request_fails(self) -> bool:
        try:
            self.request("GET", "/v2/health/live")
        except OSError:
            return True
        return False

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
