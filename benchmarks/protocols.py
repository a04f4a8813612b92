"""Protocols under perf_analyzer (Triton's own load generator, one client for all):

1. tiny model (x·W, 1x256 FP32), 8 concurrent clients: Conveyor gRPC req/s ÷ Conveyor
   HTTP (binary tensors) req/s;
2. Conveyor vs a real Triton 2.51 (Python backend; benchmarks/peers/triton.py) on the
   same model and config (dynamic batching, no queue delay, one instance) at
   concurrency 1 and 8, HTTP and gRPC: infer/s ratio and p99 ratio.
   Target (issue #3): Conveyor >= Triton on throughput, <= on p99.

Conveyor runs once per `--grpc-front` layout (default: process, then thread), so the
gain of the front process shows as a before/after inside one run.

    python benchmarks/protocols.py [--no-triton] [--interval-ms 3000] [--fronts process]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import tempfile
from pathlib import Path

from _harness import conveyor_server, demo_repo, model_repo, perf_analyzer_cmd

LINEAR = """
max_batch_size: 64
dynamic_batching: {max_queue_delay_microseconds: 0}
instance_group: [{count: 1, kind: KIND_CPU}]
parameters: {intra_op_thread_count: 1}
"""


def perf_analyzer(url: str, protocol: str, interval_ms: int) -> list[dict[str, str]]:
    """One perf_analyzer run per concurrency (1, 8); the CSV rows of those that finished.
    Stability is not demanded (this machine is noisy): each figure is the mean of 3
    windows of `interval_ms`."""
    rows = []
    for conc in ("1", "8"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pa.csv"
            cmd = perf_analyzer_cmd(
                "linear", url, protocol, conc, interval_ms, "--shape", "x:256", "-f", str(path)
            )
            out = subprocess.run(cmd, check=False, capture_output=True, text=True)
            got = []
            if path.exists():
                with path.open() as f:
                    got = list(csv.DictReader(f))
            if out.returncode != 0 or not got:
                print(f"perf_analyzer failed ({protocol}, c={conc}):\n{out.stdout[-800:]}")
            rows += got
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--no-triton", action="store_true")
    p.add_argument("--interval-ms", type=int, default=3000)
    p.add_argument("--fronts", default="process,thread", help="--grpc-front layouts to run")
    args = p.parse_args()
    source = demo_repo()
    repo = model_repo("protocols", {"linear": ("linear", LINEAR)}, source)
    results: dict[tuple[str, str], list[dict[str, str]]] = {}
    fronts = args.fronts.split(",")
    for front in fronts:
        name = "conveyor" if front == fronts[0] else f"conv/{front}"
        server = conveyor_server(repo, "--grpc-front", front)
        try:
            results[(name, "http")] = perf_analyzer(server.url, "http", args.interval_ms)
            results[(name, "grpc")] = perf_analyzer(server.grpc_url, "grpc", args.interval_ms)
        finally:
            server.stop()
    if not args.no_triton:
        from peers.triton import HTTP_PORT, start_triton

        triton = start_triton(source / "linear" / "1" / "model.onnx", delay_us=0)
        try:
            results[("triton", "http")] = perf_analyzer(
                f"127.0.0.1:{HTTP_PORT}", "http", args.interval_ms
            )
            results[("triton", "grpc")] = perf_analyzer(
                f"127.0.0.1:{HTTP_PORT + 1}", "grpc", args.interval_ms
            )
        finally:
            triton.stop()

    print(
        f"\n(conveyor = --grpc-front {fronts[0]})\n"
        f"{'server':<14}{'proto':<6}{'conc':>5}{'infer/s':>10}{'p50 us':>9}{'p99 us':>9}"
        f"{'queue':>7}{'infer':>7}"
    )
    table: dict[tuple[str, str, str], dict[str, str]] = {}
    for (name, proto), rows in results.items():
        for r in rows:
            table[(name, proto, r["Concurrency"])] = r
            print(
                f"{name:<14}{proto:<6}{r['Concurrency']:>5}{float(r['Inferences/Second']):>10.0f}"
                f"{r['p50 latency']:>9}{r['p99 latency']:>9}{r['Server Queue']:>7}"
                f"{r['Server Compute Infer']:>7}"
            )
    g, h = table.get(("conveyor", "grpc", "8")), table.get(("conveyor", "http", "8"))
    if g and h:
        ratio = float(g["Inferences/Second"]) / float(h["Inferences/Second"])
        print(f"\nconveyor gRPC / HTTP binary at 8 clients: {ratio:.2f}")
    for front in fronts[1:]:
        for conc in ("1", "8"):
            a, b = table.get(("conveyor", "grpc", conc)), table.get((f"conv/{front}", "grpc", conc))
            if a and b:
                print(
                    f"gRPC --grpc-front {fronts[0]} / {front} c={conc}: throughput x"
                    f"{float(a['Inferences/Second']) / float(b['Inferences/Second']):.2f}, "
                    f"p99 x{int(a['p99 latency']) / int(b['p99 latency']):.2f}"
                )
    for proto in ("http", "grpc"):
        for conc in ("1", "8"):
            c, t = table.get(("conveyor", proto, conc)), table.get(("triton", proto, conc))
            if c and t:
                print(
                    f"conveyor / triton {proto:<4} c={conc}: throughput x"
                    f"{float(c['Inferences/Second']) / float(t['Inferences/Second']):.2f}, "
                    f"p99 x{int(c['p99 latency']) / int(t['p99 latency']):.2f}"
                )


if __name__ == "__main__":
    main()
