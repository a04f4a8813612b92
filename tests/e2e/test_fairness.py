"""HTTP and gRPC saturating the server at once: neither protocol starves.

Each load runs alone, then both together, from separate client processes. The issue's
bar: each protocol keeps at least a quarter of its solo throughput, and gRPC's p99 stays
within 3x its solo p99. (On one event loop, uvicorn-style HTTP serving starved
grpc.aio to about 1% of its solo rate; see shared/DATA.md.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.utils import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 4
START_S = 2.0  # time for a generator process to start and connect


@pytest.fixture(scope="module")
def linear(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        demo_repo,
        "--model-control-mode",
        "explicit",
        "--load-model",
        "linear",
        log_dir=tmp_path_factory.mktemp("logs"),
    ).start()
    yield proc
    assert proc.stop() == 0


def load(kind: str, target: str, start: float) -> subprocess.Popen[str]:
    # Niced: the generators yield the CPU to the server, so what is measured is how the
    # server shares itself between the protocols, not how the OS shares 2 cores among
    # the server and 2 Python client processes.
    args = [str(start), str(SECONDS), "8"]
    return subprocess.Popen(
        ["nice", "-n", "10", sys.executable, "-m", "tests.e2e.loadgen", kind, target, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def result(p: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = p.communicate(timeout=SECONDS * 10)
    assert p.returncode == 0
    doc: dict[str, float] = json.loads(out)
    assert doc["errors"] == 0
    return doc


def measure(server: ServerProcess) -> tuple[bool, str]:
    http_solo = result(load("http", server.url, time.time() + START_S))
    grpc_solo = result(load("grpc", server.grpc_url, time.time() + START_S))
    start = time.time() + START_S  # both generators measure the same window
    both = [load("http", server.url, start), load("grpc", server.grpc_url, start)]
    http_mixed, grpc_mixed = (result(p) for p in both)
    summary = (
        f"http {http_solo['rate']:.0f} -> {http_mixed['rate']:.0f} req/s; "
        f"grpc {grpc_solo['rate']:.0f} -> {grpc_mixed['rate']:.0f} req/s, "
        f"p99 {grpc_solo['p99_ms']:.1f} -> {grpc_mixed['p99_ms']:.1f} ms"
    )
    fair = (
        http_mixed["rate"] >= http_solo["rate"] / 4
        and grpc_mixed["rate"] >= grpc_solo["rate"] / 4
        and grpc_mixed["p99_ms"] <= 3 * grpc_solo["p99_ms"]
    )
    return fair, summary


def test_neither_protocol_starves(linear: ServerProcess) -> None:
    # The clients share this 2-core machine with the server, so one round can be unlucky;
    # starvation (gRPC at ~1% of its solo rate) fails every round.
    rounds = []
    for _ in range(3):
        fair, summary = measure(linear)
        rounds.append(summary)
        if fair:
            break
    print("\n".join(rounds))
    assert fair, "\n".join(rounds)
