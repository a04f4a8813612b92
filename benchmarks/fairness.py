"""HTTP and gRPC saturating one server at once: does either protocol starve?

    python benchmarks/fairness.py [--rounds 3]

Per round: 8 HTTP clients alone, 8 gRPC clients alone, then both together, each from
its own (niced) client process, on the demo `linear` model. The bar (issue #4): each
protocol keeps at least a quarter of its solo throughput, and gRPC's p99 stays within
3x its solo p99. Prints each round and how many met the bar.
"""

from __future__ import annotations

import argparse

from _harness import CACHE, demo_repo
from tests.e2e.test_fairness import measure
from tests.e2e.utils import ServerProcess


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    server = ServerProcess(
        demo_repo(), "--model-control-mode", "explicit", "--load-model", "linear", log_dir=CACHE
    ).start()
    try:
        fair_rounds = 0
        for i in range(args.rounds):
            fair, summary, _ = measure(server)
            fair_rounds += fair
            print(f"round {i + 1}: {summary}  ({'meets' if fair else 'misses'} the bar)")
        print(f"{fair_rounds}/{args.rounds} rounds met the bar")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
