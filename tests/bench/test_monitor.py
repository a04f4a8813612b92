"""The hardware monitor: a process's CPU and RSS with its children, RAPL counters
(wrap-around included), and energy/carbon arithmetic with its basis stated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.bench import monitor as mon
from conveyor.bench.monitor import Monitor

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"


def test_cpu_and_rss_of_a_process_and_its_children(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mon, "RAPL", Path("/nonexistent"))
    # a parent that waits while its child burns 0.6 s of CPU: the tree is what counts
    script = (
        "import subprocess, sys, time\n"
        "input()\n"
        f"subprocess.run([sys.executable, '-c', {BURN!r}])\n"
        "print('done', flush=True)\n"
        "time.sleep(30)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdin is not None and parent.stdout is not None
        try:
            m = Monitor([parent.pid], interval_s=0.1, grid_g_per_kwh=500, cpu_watts_per_core=20)
            m.begin()
            parent.stdin.write("go\n")
            parent.stdin.flush()
            assert parent.stdout.readline() == "done\n"
            m.end()
        finally:
            parent.kill()
    report = m.report(requests=100)
    proc = report["processes"][str(parent.pid)]
    cpu_s = proc["cpu_percent"] / 100 * report["duration_s"]
    assert cpu_s >= 0.55  # the child's 0.6 s, and a little of the parent's
    assert proc["rss_mb_max"] > 1
    energy = report["energy"]
    assert energy["basis"] == "estimated" and "20 W per busy core" in energy["how"]
    assert energy["cpu_j"] == pytest.approx(cpu_s * 20, rel=0.05)
    assert energy["per_request_j"] == pytest.approx(energy["total_j"] / 100, rel=1e-3)
    grams = energy["per_request_j"] / 3.6e6 * 500
    assert energy["carbon_per_request_mg"] == pytest.approx(grams * 1000, rel=1e-3)
    assert report["gpus"] == [] or report["gpus"][0]["name"]


def test_rapl_counters_are_measured_across_a_wrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "intel-rapl:0"
    sub = tmp_path / "intel-rapl:0:0"  # a sub-domain: already inside the package figure
    for d in (pkg, sub):
        d.mkdir()
        (d / "max_energy_range_uj").write_text("1000000\n")
    (pkg / "energy_uj").write_text("900000\n")
    (sub / "energy_uj").write_text("5\n")
    monkeypatch.setattr(mon, "RAPL", tmp_path)
    m = Monitor()
    assert m.rapl == [pkg]
    m.begin()
    (pkg / "energy_uj").write_text("400000\n")  # wrapped: 0.1 J to the top, then 0.4 J
    m.end()
    energy = m.report(requests=5)["energy"]
    assert energy["basis"] == "measured" and energy["cpu_j"] == pytest.approx(0.5)
    assert energy["per_request_j"] == pytest.approx(0.1)


def test_a_missing_pid_is_a_clear_error() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ValueError, match=f"--monitor-pid {proc.pid}"):
        Monitor([proc.pid])
