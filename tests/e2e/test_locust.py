"""Locust with Conveyor's user class against a real server: alone, and as a master with
a worker whose histograms reach the master. Locust runs in its own processes (it
monkey-patches the interpreter with gevent on import)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.bench.results import merge_histograms
from tests.e2e.utils import ServerProcess, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = str(ROOT / "examples" / "locustfile.py")
LOCUST = shutil.which("locust", path=str(Path(sys.executable).parent))


@pytest.fixture(autouse=True)
def _needs_locust() -> None:
    if LOCUST is None:
        pytest.skip("locust is not installed (pip install conveyor[locust])")


def run_locust(*args: str, cwd: Path) -> subprocess.Popen[str]:
    assert LOCUST is not None
    return subprocess.Popen(
        [LOCUST, "-f", LOCUSTFILE, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_locust_alone_writes_conveyor_json(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "local.json"
    headless = ["--headless", "-u", "2", "-r", "2", "-t", "2s", "--host", f"http://{server.url}"]
    proc = run_locust(*headless, "--conveyor-output", str(out), cwd=tmp_path)
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, log
    result = json.loads(out.read_text())
    assert result["schema"] == "conveyor.bench/1" and result["target"] == "locust:linear"
    assert result["completed"] > 0 and result["errors"] == {}
    assert result["latency_ms"]["p99"] > 0
    # every request Locust completed is in the histogram (how many is the machine's speed)
    latency = merge_histograms([result["histograms"]["latency_us"]])
    assert latency.get_total_count() == result["completed"]


def test_locust_master_merges_its_workers(server: ServerProcess, tmp_path: Path) -> None:
    port = str(free_port())
    out = tmp_path / "dist.json"
    master = run_locust(
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        port,
        "--expect-workers",
        "1",
        "--headless",
        "-u",
        "2",
        "-r",
        "2",
        "-t",
        "3s",
        "--host",
        f"http://{server.url}",
        "--conveyor-output",
        str(out),
        cwd=tmp_path,
    )
    worker = run_locust(
        "--worker", "--master-host", "127.0.0.1", "--master-port", port, cwd=tmp_path
    )
    try:
        log, _ = master.communicate(timeout=90)
        worker.communicate(timeout=30)
    finally:
        for p in (master, worker):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert master.returncode == 0, log
    result = json.loads(out.read_text())
    assert result["pattern"]["distributed"] and result["pattern"]["workers"] == 1
    assert result["target"] == "locust:linear" and result["completed"] > 0
    # Locust's own final count of the infer requests (the last column of its closing
    # percentile table) agrees with the merged histogram's
    rows = [line for line in log.splitlines() if "infer linear" in line]
    assert rows[-1].split()[-1] == str(result["completed"])
