"""Cold start: launch a server command, time it to ready, then time its first inference
and its first N requests, to set against the steady state measured afterwards.

The command runs in a session of its own (so it and its children stop together), its
output goes to a log file, and it is stopped (SIGTERM, then SIGKILL after a grace
period) when the run ends, whatever happened.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Launched:
    command: str
    ready_url: str
    timeout_s: float = 120.0
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))
    proc: subprocess.Popen[bytes] | None = None
    time_to_ready_s: float | None = None

    def start(self) -> float:
        """Launch and wait until `ready_url` answers 200; the seconds it took."""
        with self.log_path.open("wb") as log:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                shlex.split(self.command),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = t0 + self.timeout_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the launched server exited with code {self.proc.returncode} before it "
                    f"was ready; its output ({self.log_path}):\n{self.log_tail()}"
                )
            if _ready(self.ready_url):
                self.time_to_ready_s = time.perf_counter() - t0
                return self.time_to_ready_s
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(
            f"the launched server was not ready at {self.ready_url} within {self.timeout_s:g}s;"
            f" its output ({self.log_path}):\n{self.log_tail()}"
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM to the command's session, SIGKILL after `grace_s`; its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the session we started, by its PID
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def report(
    time_to_ready_s: float,
    first: dict[str, object],
    first_n: dict[str, object],
    steady: dict[str, object],
) -> dict[str, object]:
    """The cold-start section of a result: ready time, first inference, first N vs steady."""

    def lat(result: dict[str, object]) -> dict[str, float]:
        value = result.get("latency_ms", {})
        return value if isinstance(value, dict) else {}

    first_ms = lat(first).get("max")
    out: dict[str, object] = {
        "time_to_ready_s": round(time_to_ready_s, 4),
        "first_inference_ms": first_ms,
        "time_to_first_inference_s": round(time_to_ready_s + (first_ms or 0) / 1000, 4),
        "first_n": {"requests": first_n.get("completed"), **lat(first_n)},
        "steady": {k: v for k, v in lat(steady).items() if k in ("p50", "p99", "mean")},
    }
    a, b = lat(first_n).get("p50"), lat(steady).get("p50")
    if a and b:
        out["first_n_p50_over_steady_p50"] = round(a / b, 3)
    return out
