"""gRPC against Python's gRPC ceiling (issue #11, item 4): the tiny model (x·W, 1x256
FP32, raw tensor contents) over gRPC ModelInfer on Conveyor (its front process, the
default), on a null `grpc.aio` server answering canned bytes of the same size
(benchmarks/null_grpc.py --width 256: the least a Python gRPC server can do per call)
and on Triton 2.51 (benchmarks/peers/triton.py, if its virtualenv exists), in one run,
rounds alternating, medians. The client is `conveyor bench --protocol v2-grpc` (two
worker processes). Targets: c=1 >= 0.7x and c=8 >= 0.8x the null server; c=8 >= Triton.
`--fronts process,loop,thread` measures each `--grpc-front` layout as its own target
(`conveyor` is the default, the front process).

    python benchmarks/grpc_ceiling.py [--seconds 6] [--rounds 3] [--clients 1,8] [--fronts ...]
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from _harness import Process, bench_json, conveyor_server, demo_repo, median, rotated
from tests.e2e.utils import free_port

HERE = Path(__file__).resolve().parent


def point(target: str, clients: int, seconds: float, metadata: str) -> dict[str, float]:
    doc = bench_json(
        target,
        *("--protocol", "v2-grpc", "--model", "linear", "--concurrency", str(clients)),
        *("--duration", str(seconds), "--warmup", "1", "--workers", "2"),
        *("--metadata-url", metadata),
        timeout_s=seconds * 4 + 60,
    )
    return {
        "rps": doc["throughput_rps"],
        "p50": doc["latency_ms"].get("p50", float("nan")),
        "p99": doc["latency_ms"].get("p99", float("nan")),
        "errors": sum(doc["errors"].values()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", default="1,8")
    p.add_argument("--no-triton", action="store_true")
    p.add_argument("--fronts", default="process", help="--grpc-front layouts to measure")
    args = p.parse_args()
    repo = demo_repo()
    with ExitStack() as stack:
        targets: dict[str, str] = {}
        for front in args.fronts.split(","):
            conv = conveyor_server(
                repo, "--model-control-mode", "explicit", "--load-model", "linear",
                "--grpc-front", front,
            )  # fmt: skip
            stack.callback(conv.stop)
            name = "conveyor" if front == "process" else f"conveyor-{front}"
            targets[name] = f"127.0.0.1:{conv.grpc_port}"
            metadata = f"http://{conv.url}"
        port = free_port()
        null = Process(
            [sys.executable, str(HERE / "null_grpc.py"), "--port", str(port), "--width", "256"],
            None,
            port=port,
        )
        stack.callback(null.stop)
        targets["null-grpc.aio"] = f"127.0.0.1:{port}"
        if not args.no_triton:
            try:
                from peers.triton import HTTP_PORT, start_triton

                triton = start_triton(repo / "linear" / "1" / "model.onnx")
                stack.callback(triton.stop)
                targets["triton-2.51"] = f"127.0.0.1:{HTTP_PORT + 1}"
            except RuntimeError as exc:
                print(f"(no Triton: {exc})")
        for target in targets.values():  # warm-up
            point(target, 4, 2, metadata)
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for clients in [int(c) for c in args.clients.split(",")]:
            for r in range(args.rounds):
                for name, target in rotated(list(targets.items()), r):
                    r = point(target, clients, args.seconds, metadata)
                    results.setdefault((name, clients), []).append(r)
    print(f"\n{'target':<15}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for (name, clients), rs in results.items():
        print(
            f"{name:<15}{clients:>8}{median([r['rps'] for r in rs]):>10.0f}"
            f"{median([r['p50'] for r in rs]):>9.2f}{median([r['p99'] for r in rs]):>9.2f}"
            f"{sum(r['errors'] for r in rs):>8.0f}"
        )
    print("\nconveyor / peer, throughput (medians):")
    ours_names = [n for n in targets if n.startswith("conveyor")]
    for ours_name in ours_names:
        for (name, clients), rs in results.items():
            if name not in ours_names:
                ours = median([r["rps"] for r in results[(ours_name, clients)]])
                ratio = ours / median([r["rps"] for r in rs])
                print(f"  {ours_name:<16} vs {name:<14} c={clients:<3} x{ratio:.2f}")


if __name__ == "__main__":
    main()
