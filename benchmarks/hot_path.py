"""The request path's CPU cost per request, without the network (issue #11, "profile it").

The tiny model's V2 JSON request (2.7 KB, y = x·W 256x256) is fed straight into HTTP
connections of a real server stack — HttpServer's connection, RestApp, DataPlane, the
scheduler and ONNX Runtime on the demo `linear` model — and the answers go to transports
that only keep the bytes; the same bytes go through the floor's Protocol
(benchmarks/peers/floor.py). Requests come in passes of the event loop: 1 per pass (one
client) or 32 per pass (many clients at once: the scheduler batches a pass). The figure
is this thread's CPU time per request, so sockets, the kernel and the client are out of
it: what is left is what our Python costs next to the floor's.

    python benchmarks/hot_path.py [--requests 20000] [--profile]

`--profile [1|32]` prints cProfile's table for the Conveyor side (32 per pass unless
1 is given). `--bytecodes [1|32]` counts the Python bytecodes each request executes, by
function: the same on any machine, whatever its load, so a change to the path can be
weighed exactly (2,594 per request at 32 per pass before session 10's trims, 2,535
after; the floor runs about 120 of its own). Under `valgrind --tool=callgrind` the
figures become instruction counts that repeat whatever the machine's load (run twice
with different `--requests` and divide the difference; under valgrind's slowness the
measured cost of a run exceeds `inline_execution_max_us`, so the model leaves the loop
unless that is raised).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from _harness import TINY_BODY as BODY
from _harness import demo_repo
from conveyor.dataplane import DataPlane
from conveyor.http.rest import RestApp
from conveyor.http.server import HttpServer, _Connection
from conveyor.repository.manager import ModelRepository
from conveyor.server import default_backends

HERE = Path(__file__).resolve().parent
REQUEST = (
    b"POST /v2/models/linear/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
) + BODY


class Sink:
    """A transport that keeps what is written (and counts the answers)."""

    def __init__(self) -> None:
        self.answers = 0
        self.last = b""

    def write(self, data: bytes) -> None:
        self.answers += 1
        self.last = data

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def measure(feed: list[Callable[[bytes], None]], sinks: list[Sink], requests: int) -> float:
    """CPU µs per request, `len(feed)` requests per loop pass."""
    per_pass = len(feed)
    passes = max(1, requests // per_pass)
    expected = sum(s.answers for s in sinks)
    start = time.thread_time_ns()
    for _ in range(passes):
        for data_received in feed:
            data_received(REQUEST)
        expected += per_pass
        await asyncio.sleep(0)  # the pass ends (a request per pass is a client's pace)
        while sum(s.answers for s in sinks) < expected:
            await asyncio.sleep(0)
    return (time.thread_time_ns() - start) / 1e3 / (passes * per_pass)


async def bytecodes(
    feed: list[Callable[[bytes], None]], sinks: list[Sink], requests: int
) -> Counter[tuple[str, str]]:
    """Bytecodes executed per function over `requests` requests (sys.settrace's opcode
    events: slow, exact)."""
    counts: Counter[tuple[str, str]] = Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            counts[(code.co_filename.rsplit("/src/", 1)[-1], code.co_name)] += 1
        return trace

    sys.settrace(trace)
    try:
        await measure(feed, sinks, requests)
    finally:
        sys.settrace(None)
    return counts


def floor_protocol(model: Path) -> Any:
    spec = importlib.util.spec_from_file_location("floor", HERE / "peers" / "floor.py")
    assert spec is not None and spec.loader is not None
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    w = numpy_helper.to_array(onnx.load(model).graph.initializer[0]).astype(np.float32)
    return lambda: floor.Floor(w)


async def run(args: argparse.Namespace) -> None:
    root = demo_repo()
    repository = ModelRepository(root, default_backends())
    repository.load(["linear"])
    repository.start(asyncio.get_running_loop())
    dataplane = DataPlane(repository)
    dataplane.starting, dataplane.ready = False, True
    server = HttpServer(RestApp(dataplane), "127.0.0.1", 0, 1 << 20)
    new_floor = floor_protocol(root / "linear" / "1" / "model.onnx")

    def connections(kind: str, n: int) -> tuple[list[Callable[[bytes], None]], list[Sink]]:
        feed, sinks = [], []
        for _ in range(n):
            conn = _Connection(server) if kind == "conveyor" else new_floor()
            sink = Sink()
            conn.connection_made(sink)
            feed.append(conn.data_received)
            sinks.append(sink)
        return feed, sinks

    setups = {(k, n): connections(k, n) for k in ("conveyor", "floor") for n in (1, 32)}
    for (kind, _n), (feed, sinks) in setups.items():  # warm-up; answers checked
        await measure(feed, sinks, 2000)
        assert sinks[0].last.startswith(b"HTTP/1.1 200"), (kind, sinks[0].last[:200])
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):  # alternating
        for key, (feed, sinks) in setups.items():
            results.setdefault(key, []).append(await measure(feed, sinks, args.requests))
    print(f"CPU µs per request (median of {args.rounds} alternating rounds):")
    for n in (1, 32):
        ours = float(np.median(results[("conveyor", n)]))
        floor = float(np.median(results[("floor", n)]))
        print(
            f"  {n:>2} per pass: conveyor {ours:6.1f}   floor {floor:6.1f}   "
            f"conveyor / floor x{ours / floor:.2f}"
        )
    stats = repository.get("linear", "").scheduler.stats
    print(f"  mean batch: {stats.inference_count / max(1, stats.execution_count):.1f} rows")
    if args.bytecodes:
        feed, sinks = setups[("conveyor", args.bytecodes)]
        per_function = await bytecodes(feed, sinks, 10 * args.bytecodes)
        n = 10 * args.bytecodes
        print(f"Python bytecodes per request ({args.bytecodes} per pass):")
        print(f"  {sum(per_function.values()) / n:8.0f}  in all")
        for (where, name), count in per_function.most_common(30):
            print(f"  {count / n:8.1f}  {where}:{name}")
    if args.profile:
        feed, sinks = setups[("conveyor", args.profile)]
        profile = cProfile.Profile()
        profile.enable()
        await measure(feed, sinks, args.requests)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    repository.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=20000, help="per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=32,
        choices=(1, 32),
        help="print cProfile's table for Conveyor at this many requests per pass (32)",
    )
    p.add_argument(
        "--bytecodes",
        type=int,
        nargs="?",
        const=32,
        choices=(1, 32),
        help="count the Python bytecodes per request, by function (32 per pass unless 1)",
    )
    args = p.parse_args()
    try:
        import uvloop

        uvloop.run(run(args))
    except ImportError:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
