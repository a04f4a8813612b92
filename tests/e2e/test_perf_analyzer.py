"""Triton's perf_analyzer (2.51, from PyPI; scripts/perf_analyzer.sh) drives
`conveyor serve` over HTTP and gRPC and gets its server-side breakdown from our
statistics extension. Skips, saying why, where the binary cannot be set up or run."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from tests.e2e.utils import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "perf_analyzer.sh"


@pytest.fixture(scope="module")
def perf_analyzer() -> Path:
    try:
        out = subprocess.run(
            [str(SCRIPT), "--version"], capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired:
        pytest.skip("perf_analyzer set-up took over 10 minutes")
    if out.returncode != 0 or "2.51.0" not in out.stdout + out.stderr:
        pytest.skip(f"perf_analyzer cannot run here: {(out.stderr or out.stdout)[-300:]}")
    return SCRIPT


@pytest.mark.parametrize("shm", [False, True], ids=["tensors", "shared-memory"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_with_server_side_columns(
    perf_analyzer: Path, server: ServerProcess, protocol: str, shm: bool, tmp_path: Path
) -> None:
    url = server.url if protocol == "http" else server.grpc_url
    csv_path = tmp_path / "pa.csv"
    args = [
        "-m",
        "simple",
        "-i",
        protocol,
        "-u",
        url,
        "--concurrency-range",
        "1:4:3",
        "-p",
        "500",
        "--max-trials",
        "3",
        "--stability-percentage",
        "999",
        "-f",
        str(csv_path),
    ]
    if shm:  # inputs and outputs through system shared memory regions it registers
        args += ["--shared-memory", "system", "--output-shared-memory-size", "64"]
    out = subprocess.run([str(perf_analyzer), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Unable to unregister" not in out.stdout + out.stderr
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["Concurrency"] for r in rows] == ["1", "4"]
    for row in rows:
        assert float(row["Inferences/Second"]) > 0
        assert int(row["Server Compute Infer"]) > 0  # our statistics feed its breakdown
        assert int(row["p99 latency"]) > 0
