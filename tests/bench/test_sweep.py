"""Sweeps and the SLO search: value parsing, the SLO rule, bisection, and a search
against a real server whose latency grows with load (one request at a time, 20 ms).

The `conveyor bench` runs go through the CLI, but each on a loop whose clock the test
drives (`tests/virtual_time.py`), with the server on that same loop: latencies are the
server's 20 ms steps exactly, whatever the machine's load."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conveyor.bench import cli as bench_cli
from conveyor.bench.sweep import Slo, bisect_max, parse_bounds, parse_values
from conveyor.cli import main
from conveyor.http.server import HttpRequest, HttpResponse, HttpServer
from tests.virtual_time import run_virtual

T = TypeVar("T")


def test_values_lists_and_ranges() -> None:
    assert parse_values("4", integer=True) == [4]
    assert parse_values("1,2,4,8", integer=True) == [1, 2, 4, 8]
    assert parse_values("1:4", integer=True) == [1, 2, 3, 4]
    assert parse_values("100:300:100", integer=False) == [100, 200, 300]
    for bad in ("0", "x", "4:1", "1:4:0", ""):
        with pytest.raises(ValueError):
            parse_values(bad, integer=True)
    assert parse_bounds("1:64", integer=True) == (1, 64)
    with pytest.raises(ValueError, match="0 < low < high"):
        parse_bounds("8:2", integer=True)


def result(p99: float, completed: int = 100, errors: int = 0) -> dict[str, object]:
    return {
        "completed": completed,
        "errors": {"http_503": errors} if errors else {},
        "latency_ms": {"p99": p99},
    }


def test_slo_rule() -> None:
    slo = Slo.parse("p99<=20")
    assert (slo.percentile, slo.limit_ms) == ("p99", 20.0)
    assert slo.check(result(19.9))[0] and not slo.check(result(20.1))[0]
    assert not slo.check(result(1.0, errors=1))[0]  # errors fail by default
    assert Slo.parse("p99.9 <= 5ms", 0.05).check(result(1.0, errors=1))[0] is False
    assert Slo("p99", 20, 0.05).check(result(1.0, errors=2))[0]
    assert not slo.check(result(1.0, completed=0))[0]
    with pytest.raises(ValueError):
        Slo.parse("p99 < fast")


def test_bisection_finds_the_edge() -> None:
    probes: list[float] = []

    def under(limit: float) -> object:
        def passes(v: float) -> bool:
            probes.append(v)
            return v <= limit

        return passes

    assert bisect_max(1, 64, under(13), integer=True) == 13  # type: ignore[arg-type]
    assert len(probes) <= 2 + 6  # both bounds, then log2(63) halvings
    assert bisect_max(1, 64, under(100), integer=True) == 64  # type: ignore[arg-type]
    assert bisect_max(2, 64, under(1), integer=True) is None  # type: ignore[arg-type]
    best = bisect_max(100, 1000, under(437.0), integer=False, precision=0.01)  # type: ignore[arg-type]
    assert best is not None and 437.0 * 0.99 <= best <= 437.0


class Serial:
    """One request at a time, 20 ms each: with N clients, latency is N x 20 ms."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        async with self.lock:
            await asyncio.sleep(0.020)
        return HttpResponse(200, [b"{}"])


@pytest.fixture
def serial_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The URL of a `Serial` server that runs on the loop of each measurement the CLI
    makes, a loop whose clock the test drives. One listening socket for the whole test,
    so the URL stays the same from one measurement (one loop) to the next."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run_loop(coro: Coroutine[Any, Any, T]) -> T:
        async def with_server() -> T:
            server = HttpServer(Serial(), "127.0.0.1", 0, 1 << 20, sock=listener.dup())
            await server.start()
            try:
                return await coro
            finally:
                await server.shutdown(1.0)

        return run_virtual(with_server())

    monkeypatch.setattr(bench_cli, "_run_loop", run_loop)
    with listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/infer"


def test_search_finds_the_highest_concurrency_under_the_slo(
    serial_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "search.json"
    argv = ["bench", serial_url, "--protocol", "http", "--concurrency", "1:8"]
    argv += ["--slo", "p50<=70", "--duration", "1", "--warmup", "0.2", "--output", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["search"]["best"] == 3  # 3 clients 60 ms; 4 clients 80 ms
    assert doc["schema"] == "conveyor.bench/1" and doc["environment"]["cpu_count"]
    passed = {p["concurrency"]: p["slo_pass"] for p in doc["steps"]}
    assert passed[1] and not passed[8]
    assert "highest concurrency meeting p50<=70: 3" in capsys.readouterr().out


def test_sweep_runs_every_step_with_items_per_second(serial_url: str, tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    argv = ["bench", serial_url, "--protocol", "http", "--concurrency", "1,2"]
    argv += ["--batch-size", "1,4", "--duration", "0.5", "--warmup", "0", "--output", str(out)]
    assert main(argv) == 0
    steps = json.loads(out.read_text())["steps"]
    assert [(s["batch_size"], s["pattern"]["concurrency"]) for s in steps] == [
        (1, 1),
        (1, 2),
        (4, 1),
        (4, 2),
    ]
    for s in steps:
        assert s["items_per_second"] == pytest.approx(s["throughput_rps"] * s["batch_size"])


def test_table_of_several_results(
    serial_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, many = tmp_path / "one.json", tmp_path / "many.json"
    base = ["bench", serial_url, "--protocol", "http", "--warmup", "0", "--duration", "0.3"]
    assert main([*base, "--output", str(one)]) == 0
    assert main([*base, "--batch-size", "2,8", "--output", str(many)]) == 0
    capsys.readouterr()
    assert main(["bench", "--table", str(one), str(many)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["target", "batch", "conc", "rate/s"]
    assert [line.split()[1] for line in lines[1:]] == ["1", "2", "8"]  # every step, in order
