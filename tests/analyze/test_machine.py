"""The machine's ceilings: the arithmetic of each figure on a clock the test drives, the
cache keyed by the machine's identity, and the command end to end (its figures are not
asserted: they are this machine's speed)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from conveyor.analyze import machine
from conveyor.cli import main


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """perf_counter ticks 0.5 s per call: every timed section lasts 0.5 s."""
    ticks = itertools.count()
    monkeypatch.setattr(machine.time, "perf_counter", lambda: next(ticks) * 0.5)


def test_matmul_flops_are_2n3_over_the_time(clock: None) -> None:
    assert machine.matmul_gflops(n=64, repeat=2) == pytest.approx(2 * 64**3 / 0.5 / 1e9)


def test_bandwidth_counts_every_transfer(clock: None) -> None:
    found = machine.bandwidth_gbs(mib=1, repeat=2)
    nbytes = 1024 * 1024
    assert found["triad"] == pytest.approx(5 * nbytes / 0.5 / 1e9)  # c->a, then a+b->a
    assert found["copy"] == pytest.approx(2 * nbytes / 0.5 / 1e9)


def test_the_cache_belongs_to_one_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(machine, "CACHE_DIR", tmp_path)
    measured = {"identity": machine.identity(), "fp32_gflops_1_core": 1.0}
    calls = []
    monkeypatch.setattr(machine, "measure", lambda: calls.append(1) or dict(measured))
    assert machine.peaks()["cached"] is False
    assert machine.peaks()["cached"] is True and len(calls) == 1
    assert machine.peaks(refresh=True)["cached"] is False and len(calls) == 2
    # another machine's file under this machine's name is measured again, not trusted
    path = machine.cache_path()
    path.write_text(json.dumps({**measured, "identity": {"cpu": "elsewhere"}}))
    assert machine.peaks()["cached"] is False and len(calls) == 3


@pytest.mark.slow
def test_the_command_measures_and_caches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(machine, "CACHE_DIR", tmp_path)
    assert main(["analyze", "--machine", "--output", str(tmp_path / "m.json")]) == 0
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["fp32_gflops_1_core"] > 0 and doc["fp32_gflops_all_cores"] > 0
    assert doc["bandwidth_gbs"]["triad"] > 0 and doc["peak_bandwidth_gbs"] > 0
    assert "FP32 matmul, 1 core" in capsys.readouterr().out
    assert main(["analyze", "--machine"]) == 0
    assert "cached" in capsys.readouterr().out
