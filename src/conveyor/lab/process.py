"""Peer servers as processes the lab owns: started in a session of their own, ready
when a URL answers, measured (CPU seconds and resident memory of the whole tree), and
stopped by their process group, which the lab created. Nothing else is signalled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil


class PeerError(Exception):
    """A peer could not be installed, started or measured; the run goes on without it."""


def answers(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


class Server:
    """One peer server process (and whatever it starts)."""

    def __init__(
        self,
        cmd: list[str],
        log: Path,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout_s: float = 180.0,
    ) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own process group: stopped as one
            )
        self.pid = self.proc.pid
        deadline = t0 + timeout_s
        try:
            while not ready():
                if self.proc.poll() is not None:
                    raise PeerError(
                        f"exited with {self.proc.returncode} while starting: {tail(log)}"
                    )
                if time.perf_counter() > deadline:
                    raise PeerError(f"not ready in {timeout_s:g} s: {tail(log)}")
                time.sleep(0.05)
        except BaseException:  # not ready, or the lab interrupted: nothing left running
            self.stop()
            raise
        self.startup_s = time.perf_counter() - t0

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.tree():
            try:
                total += sum(proc.cpu_times()[:2])
            except psutil.Error:
                continue
        return total

    def rss_mb(self) -> float:
        total = 0
        for proc in self.tree():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20

    def stop(self, timeout_s: float = 20.0) -> list[int]:
        """SIGTERM to the group, SIGKILL after `timeout_s`; the PIDs of the group still
        alive afterwards (none, or the run says so)."""
        if self.proc.poll() is None or group_alive(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and group_alive(self.pid):
                self.proc.poll()
                time.sleep(0.05)
            if group_alive(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                time.sleep(0.2)
        self.proc.poll()
        return group_members(self.pid)


def group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) of process group `pgid`."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(proc.info["pid"]) == pgid:
                found.append(int(proc.info["pid"]))
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))
