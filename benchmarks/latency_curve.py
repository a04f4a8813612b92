"""How cost grows with load (issue #11, item 5): a latency-throughput curve in open loop,
rising rates up to saturation, for Conveyor, the hand-written floor and (when its
virtualenv exists, benchmarks/peers/triton.py) Triton 2.51 — in one run, the targets
alternating at each rate — with each server's CPU microseconds per request.

    python benchmarks/latency_curve.py [--rates 500,1000,2000,4000,6000] [--seconds 8]

The tiny model (x·W, 1x256 FP32, 2.7 KB V2 JSON), 5 ms batching window configured on
Conveyor and Triton. The client is `conveyor bench` in open loop (Poisson arrivals,
latency from each request's intended send time, so a server that falls behind shows it),
two worker processes; the server's CPU comes from its processes' CPU times over the
measured window. A rate a target cannot sustain shows as achieved < offered and a p99
that jumps. Table only (no plot): offered rate, achieved rate, p50, p99, errors,
server CPU µs per request.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from _harness import Process, bench_json, conveyor_server, cpu_seconds, demo_repo
from tests.e2e.utils import free_port

HERE = Path(__file__).resolve().parent


def point(base: str, pid: int, rate: int, seconds: float, metadata: str) -> dict[str, float]:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    doc = bench_json(
        base,
        *("--model", "linear", "--protocol", "v2-json", "--rate", str(rate), "--poisson"),
        *("--duration", str(seconds), "--warmup", "1", "--workers", "2"),
        # the floor serves inference only: the same model's metadata from Conveyor
        *("--metadata-url", metadata),
        timeout_s=seconds * 4 + 60,
    )
    cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
    lat = doc["latency_ms"]
    done = doc["completed"]
    # the CPU window includes the warm-up second: charge it per request answered in it
    answered = done * (wall / max(doc["duration_s"], 1e-9))
    return {
        "achieved": doc["throughput_rps"],
        "p50": lat.get("p50", float("nan")),
        "p99": lat.get("p99", float("nan")),
        "errors": sum(doc["errors"].values()),
        "cpu_us": cpu / max(answered, 1) * 1e6,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rates", default="500,1000,2000,4000,6000")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--no-triton", action="store_true")
    args = p.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    repo = demo_repo()
    model = repo / "linear" / "1" / "model.onnx"
    targets: dict[str, tuple[str, int]] = {}
    with ExitStack() as stack:
        server = conveyor_server(
            repo,
            "--model-control-mode",
            "explicit",
            "--load-model",
            "linear",
            "--allow-grpc",
            "false",
        )
        stack.callback(server.stop)
        assert server.proc is not None
        targets["conveyor"] = (f"http://{server.url}", server.proc.pid)
        port = free_port()
        floor = Process(
            [sys.executable, str(HERE / "peers" / "floor.py"), str(model), "--port", str(port)],
            f"http://127.0.0.1:{port}/v2/health/ready",
        )
        stack.callback(floor.stop)
        targets["floor"] = (f"http://127.0.0.1:{port}", floor.proc.pid)
        if not args.no_triton:
            try:
                from peers.triton import HTTP_PORT, start_triton

                triton = start_triton(model)
                stack.callback(triton.stop)
                targets["triton-2.51"] = (f"http://127.0.0.1:{HTTP_PORT}", triton.proc.pid)
            except RuntimeError as exc:
                print(f"(no Triton: {exc})")
        rows: dict[str, list[tuple[int, dict[str, float]]]] = {name: [] for name in targets}
        for i, rate in enumerate(rates):
            order = list(targets.items()) if i % 2 == 0 else list(reversed(targets.items()))
            for name, (base, pid) in order:
                result = point(base, pid, rate, args.seconds, targets["conveyor"][0])
                rows[name].append((rate, result))
                print(
                    f"{name:12s} offered {rate:6d}/s: achieved {result['achieved']:8.0f}/s  "
                    f"p50 {result['p50']:7.2f} ms  p99 {result['p99']:8.2f} ms  "
                    f"errors {result['errors']:.0f}  server {result['cpu_us']:6.0f} µs CPU/req",
                    flush=True,
                )
    print("\n| target | offered/s | achieved/s | p50 ms | p99 ms | errors | server CPU µs/req |")
    print("|---|---|---|---|---|---|---|")
    for name, points in rows.items():
        for rate, r in points:
            print(
                f"| {name} | {rate} | {r['achieved']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                f"{r['errors']:.0f} | {r['cpu_us']:.0f} |"
            )


if __name__ == "__main__":
    main()
