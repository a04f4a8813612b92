"""Peer processes: ready on a URL, a failed start is a PeerError with the log's tail,
and stopping ends the whole group (children included), nothing else."""

from __future__ import annotations

import socket
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from conveyor.lab.process import PeerError, Server, answers, group_members

SERVER = textwrap.dedent(
    """
    import http.server, subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(str(child.pid).encode())
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_start_measure_stop_the_whole_group(tmp_path: Path) -> None:
    port = _port()
    url = f"http://127.0.0.1:{port}/"
    server = Server(
        [sys.executable, "-c", SERVER, str(port)], tmp_path / "log", lambda: answers(url)
    )
    assert server.startup_s > 0
    assert len(server.tree()) == 2 and server.rss_mb() > 0 and server.cpu_seconds() >= 0
    pids = [p.pid for p in server.tree()]
    assert sorted(group_members(server.pid)) == sorted(pids)
    assert server.stop() == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)


def test_exit_while_starting_says_why(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"]
    with pytest.raises(PeerError, match="exited with 3 while starting: no model here"):
        Server(cmd, tmp_path / "log", lambda: False)


def test_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import time; print('loading'); time.sleep(600)"]
    with pytest.raises(PeerError, match=r"not ready in 0\.5 s: loading"):
        Server(cmd, tmp_path / "log", lambda: False, timeout_s=0.5)
