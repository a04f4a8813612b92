"""Seed 004's table (issue #11): max batch 4, a 10 ms batching window, 1 instance, at
1, 2, 4 and 10 clients — Conveyor and Triton 2.51 (python backend, the same x·W and the
same config) in one run, rounds alternating, medians.

The tiny model (x·W, 1x256 FP32, 2.7 KB V2 JSON), wrk as the client. Targets: p50 at 1
and 2 clients <= 0.5 ms (Triton waits its 10 ms window for a batch that does not come),
throughput at 10 clients >= Triton's.

    python benchmarks/small_batches.py [--seconds 8] [--rounds 3] [--no-triton]
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from _harness import TINY_BODY as BODY
from _harness import WrkResult, conveyor_server, demo_repo, median, model_repo, rotated, wrk
from conveyor.demo.repository import LINEAR_YAML

# the demo's `linear` with seed 004's batching: at most 4 rows, a 10 ms window
CONFIG = LINEAR_YAML.replace("max_batch_size: 64", "max_batch_size: 4").replace(
    "max_queue_delay_microseconds: 5000", "max_queue_delay_microseconds: 10000"
)
assert "max_batch_size: 4" in CONFIG and "delay_microseconds: 10000" in CONFIG


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", default="1,2,4,10")
    p.add_argument("--no-triton", action="store_true")
    args = p.parse_args()
    source = demo_repo()
    repo = model_repo("small-batches", {"linear": ("linear", CONFIG)}, source)
    with ExitStack() as stack:
        conv = conveyor_server(repo)
        stack.callback(conv.stop)
        targets = {"conveyor": f"http://{conv.url}/v2/models/linear/infer"}
        if not args.no_triton:
            try:
                from peers.triton import start_triton

                triton = start_triton(
                    source / "linear" / "1" / "model.onnx", delay_us=10000, max_batch=4
                )
                stack.callback(triton.stop)
                targets["triton-2.51"] = "http://127.0.0.1:8200/v2/models/linear/infer"
            except Exception as exc:  # reported, not hidden
                print(f"Triton not measured: {exc}")
        headers = {"content-type": "application/json"}
        for url in targets.values():  # warm-up
            wrk(url, BODY, headers, 4, 2)
        results: dict[tuple[str, int], list[WrkResult]] = {}
        for clients in [int(c) for c in args.clients.split(",")]:
            for r in range(args.rounds):
                for name, url in rotated(list(targets.items()), r):
                    results.setdefault((name, clients), []).append(
                        wrk(url, BODY, headers, clients, args.seconds)
                    )
    print(f"\n{'target':<14}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for (name, clients), rs in results.items():
        print(
            f"{name:<14}{clients:>8}{median([r.rps for r in rs]):>10.0f}"
            f"{median([r.p50_ms for r in rs]):>9.2f}{median([r.p99_ms for r in rs]):>9.2f}"
            f"{sum(r.errors for r in rs):>8}"
        )
    if "triton-2.51" in targets:
        ratios = []
        for c in sorted({c for _, c in results}):
            ours = median([r.rps for r in results[("conveyor", c)]])
            theirs = median([r.rps for r in results[("triton-2.51", c)]])
            ratios.append(f"c={c} x{ours / theirs:.2f}")
        print("\nthroughput conveyor / triton (medians):", ", ".join(ratios))


if __name__ == "__main__":
    main()
