"""Tiny model (x·W, 1x256 FP32 in, JSON) against the peers, same client (wrk), one run.

Conveyor serves the demo `linear` model with a 5 ms batching window; the lean
FastAPI app (the lab's, src/conveyor/lab/servers/fastapi_app.py), the hand-written floor
(benchmarks/peers/floor.py: what issue #11 measures the request path against) and, when
installed, Triton 2.51 (benchmarks/peers/triton.py) do the same work. Rounds alternate
between targets and the medians are reported, with ratios Conveyor / peer, and each
server's CPU µs per request (its processes' CPU time over the wrk run, divided by the
requests wrk counted): on a VM whose wake-up latency comes and goes, the CPU figure is
the steadier one, and at one client the throughput ratio is mostly its inverse.

Targets: issue #11, at 32 clients >= 2x Triton and >= 0.7x the floor, p99 <= Triton's;
at 1 client >= 0.8x the floor (issue #2's, against the lean app: >= 2x at 32, 1.5x at 1).

    python benchmarks/tiny_vs_peers.py [--seconds 10] [--rounds 3] [--no-triton]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from _harness import TINY_BODY as BODY
from _harness import (
    Process,
    WrkResult,
    conveyor_server,
    cpu_seconds,
    demo_repo,
    median,
    rotated,
    wrk,
)

HERE = Path(__file__).resolve().parent
FASTAPI_APP = HERE.parent / "src" / "conveyor" / "lab" / "servers" / "fastapi_app.py"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", default="1,32")
    p.add_argument("--no-triton", action="store_true")
    args = p.parse_args()
    repo = demo_repo()
    model = repo / "linear" / "1" / "model.onnx"
    print(f"body: {len(BODY)} bytes of V2 JSON; model {model}")

    with ExitStack() as stack:
        targets: dict[str, str] = {}
        pids: dict[str, int] = {}
        conv = conveyor_server(repo, "--model-control-mode", "explicit", "--load-model", "linear")
        stack.callback(conv.stop)
        targets["conveyor"] = f"http://{conv.url}/v2/models/linear/infer"
        assert conv.proc is not None
        pids["conveyor"] = conv.proc.pid
        if importlib.util.find_spec("uvicorn") and importlib.util.find_spec("fastapi"):
            lean = Process(
                [sys.executable, str(FASTAPI_APP), "--model", f"linear={model}", "--port", "8100"],
                "http://127.0.0.1:8100/v2/health/ready",
            )
            stack.callback(lean.stop)
            targets["lean-fastapi"] = "http://127.0.0.1:8100/v2/models/linear/infer"
            pids["lean-fastapi"] = lean.proc.pid
        else:  # reported, not hidden, as for Triton
            print('lean FastAPI app not measured: pip install -e ".[bench]" (FastAPI, uvicorn)')
        floor = Process(
            [sys.executable, str(HERE / "peers" / "floor.py"), str(model), "--port", "8300"],
            "http://127.0.0.1:8300/v2/health/ready",
        )
        stack.callback(floor.stop)
        targets["floor"] = "http://127.0.0.1:8300/v2/models/linear/infer"
        pids["floor"] = floor.proc.pid
        if not args.no_triton:
            try:
                from peers.triton import start_triton

                triton = start_triton(model)
                stack.callback(triton.stop)
                targets["triton-2.51"] = "http://127.0.0.1:8200/v2/models/linear/infer"
                pids["triton-2.51"] = triton.proc.pid
            except Exception as exc:  # reported, not hidden: the table says it is missing
                print(f"Triton not measured: {exc}")

        run: Callable[[str, int], WrkResult] = lambda url, c: wrk(  # noqa: E731
            url, BODY, {"content-type": "application/json"}, c, args.seconds
        )
        for url in targets.values():  # warm-up
            run(url, 8)
        results: dict[tuple[str, int], list[WrkResult]] = {}
        cpu_us: dict[tuple[str, int], list[float]] = {}
        for clients in [int(c) for c in args.clients.split(",")]:
            for r in range(args.rounds):
                for name, url in rotated(list(targets.items()), r):
                    cpu0 = cpu_seconds(pids[name])
                    result = run(url, clients)
                    cpu = cpu_seconds(pids[name]) - cpu0
                    results.setdefault((name, clients), []).append(result)
                    cpu_us.setdefault((name, clients), []).append(
                        cpu / max(result.requests, 1) * 1e6
                    )

    print(
        f"\n{'target':<14}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}"
        f"{'p99 ms':>9}{'errors':>8}{'CPU µs/req':>12}"
    )
    summary: dict[tuple[str, int], tuple[float, float, float]] = {}
    for (name, clients), rs in results.items():
        rps, p99 = median([r.rps for r in rs]), median([r.p99_ms for r in rs])
        cpu = median(cpu_us[(name, clients)])
        summary[(name, clients)] = (rps, p99, cpu)
        print(
            f"{name:<14}{clients:>8}{rps:>10.0f}{median([r.p50_ms for r in rs]):>9.2f}"
            f"{median([r.p90_ms for r in rs]):>9.2f}{p99:>9.2f}{sum(r.errors for r in rs):>8}"
            f"{cpu:>12.0f}"
        )
    print("\nratios (conveyor / peer; medians of rounds):")
    for (name, clients), (rps, p99, cpu) in summary.items():
        if name == "conveyor":
            continue
        c_rps, c_p99, c_cpu = summary[("conveyor", clients)]
        print(
            f"  vs {name:<13} c={clients:<3} throughput x{c_rps / rps:.2f}   "
            f"p99 x{c_p99 / p99:.2f}   CPU/req x{c_cpu / cpu:.2f} (lower is better)"
        )


if __name__ == "__main__":
    main()
