"""gRPC served by a front process (`--grpc-front process`, the default).

The server process keeps the data plane and answers the front's forwarded calls on its
own event loop (bridge.py), so HTTP and gRPC requests still meet in one batcher; the
front (front.py) owns the gRPC listener. Same interface as `GrpcServer`: `start()`,
`port`, `set_serving()`, `stop()`.

Measured on this 2-core machine (tests/e2e/test_fairness.py): with gRPC in a thread of
the server process, HTTP kept 24-33% of its solo throughput under mixed load, because
grpc's Python bindings hold the GIL for most of each call (even for ServerLive, which
never touches the data plane); with the front in its own process the GIL is no longer
shared. If the front dies, it is restarted on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile

from conveyor import logs
from conveyor.dataplane import DataPlane
from conveyor.grpc.bridge import BridgeApp
from conveyor.grpc.service import InferenceService
from conveyor.http.server import HttpServer
from conveyor.security import Security, Tls

log = logging.getLogger("conveyor.grpc")

START_TIMEOUT_S = 60.0


class GrpcFrontProcess:
    def __init__(
        self,
        dataplane: DataPlane,
        host: str,
        port: int,
        max_message_bytes: int,
        exit_timeout_s: float = 30.0,
        security: Security | None = None,
        tls: Tls | None = None,
    ) -> None:
        self.dataplane = dataplane
        self.security = security  # None: open (the server passes None for no tokens)
        self.tls = tls
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.exit_timeout_s = exit_timeout_s
        self.bridge: BridgeApp | None = None
        self._http: HttpServer | None = None
        self._dir: str | None = None
        self._socket = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        self.bridge = BridgeApp(InferenceService(self.dataplane, asyncio.get_running_loop()))
        self._dir = tempfile.mkdtemp(prefix="conveyor-grpc-")  # mode 0700: ours alone
        self._socket = os.path.join(self._dir, "bridge.sock")
        self._http = HttpServer(
            self.bridge,
            "",
            0,
            self.max_message_bytes + (1 << 16),
            keepalive_timeout_s=float("inf"),
            unix_path=self._socket,
        )
        await self._http.start()
        await self._spawn()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    def _security_args(self) -> list[str]:
        """Where the front finds the tokens (their files; the environment it inherits)
        and the TLS files: paths only, never a token on a command line."""
        args: list[str] = []
        if self.security is not None:
            args += ["--auth", "on", "--auth-exempt", ",".join(sorted(self.security.exempt))]
            if self.security.data_token_file:
                args += ["--auth-token-file", self.security.data_token_file]
            if self.security.control_token_file:
                args += ["--control-token-file", self.security.control_token_file]
        if self.tls is not None:
            args += ["--tls-cert-file", self.tls.cert_file, "--tls-key-file", self.tls.key_file]
            if self.tls.client_ca_file:
                args += ["--tls-client-ca-file", self.tls.client_ca_file]
        return args

    async def _spawn(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "conveyor.grpc.front",
            "--upstream",
            self._socket,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--max-message-bytes",
            str(self.max_message_bytes),
            "--exit-timeout-secs",
            str(self.exit_timeout_s),
            "--parent-pid",
            str(os.getpid()),
            "--log-level",
            logs.get_level(),
            "--log-format",
            logs.current_format(),
            *self._security_args(),
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches us; we stop the front
        )
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if not line.startswith(b"listening "):
            if self._proc.returncode is None:
                self._proc.kill()
            code = await self._proc.wait()
            raise RuntimeError(
                f"the gRPC front process did not start on {self.host}:{self.port} "
                f"(exit code {code}; its reason is in the log above)"
            )
        self.port = int(line.split()[1])
        log.debug("gRPC front process pid %d serving on port %d", self._proc.pid, self.port)

    async def _supervise(self) -> None:
        while self._proc is not None:
            code = await self._proc.wait()
            if self._stopping:
                return
            log.error(
                "the gRPC front process (pid %d) exited with code %s; restarting it",
                self._proc.pid,
                code,
            )
            await asyncio.sleep(0.5)
            try:
                await self._spawn()
                log.info("gRPC front restarted: pid %d on port %d", self._proc.pid, self.port)
            except Exception:
                log.exception("could not restart the gRPC front; retrying in 5s")
                await asyncio.sleep(5)

    async def set_serving(self, serving: bool) -> None:
        if self.bridge is not None:
            self.bridge.serving = serving

    async def stop(self, grace_s: float) -> None:
        """The front finishes its in-flight calls (they still reach us), then exits."""
        self._stopping = True
        await self.set_serving(False)
        if self._supervisor is not None:
            self._supervisor.cancel()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace_s + 5.0)
            except TimeoutError:
                log.error("the gRPC front process did not stop in time; killing it")
                proc.kill()
                await proc.wait()
        if self._http is not None:
            await self._http.shutdown(1.0)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
