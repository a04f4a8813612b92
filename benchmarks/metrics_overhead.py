"""What /metrics costs: the tiny model (x·W, binary tensors) at 8 clients, served with
metrics on and off, rounds alternating; the ratio of median throughputs.

Target (issue #4): with metrics / without >= 0.97.

    python benchmarks/metrics_overhead.py [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from _harness import conveyor_server, demo_repo, median, wrk


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    repo = demo_repo()
    x = np.random.default_rng(0).random((1, 256), dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 256],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ]
        }
    ).encode()
    body = header + x.tobytes()
    headers = {"inference-header-content-length": str(len(header))}
    rates: dict[str, list[float]] = {"true": [], "false": []}
    for _ in range(args.rounds):
        for flag in rates:
            server = conveyor_server(
                repo,
                "--model-control-mode",
                "explicit",
                "--load-model",
                "linear",
                "--allow-metrics",
                flag,
            )
            try:
                url = f"http://{server.url}/v2/models/linear/infer"
                wrk(url, body, headers, 8, 2)
                r = wrk(url, body, headers, 8, args.seconds)
                rates[flag].append(r.rps)
                print(f"  metrics {flag:<5} {r.rps:8.0f} req/s  p99 {r.p99_ms:.2f} ms")
            finally:
                server.stop()
    ratio = median(rates["true"]) / median(rates["false"])
    print(f"with metrics / without = {ratio:.3f}   (target >= 0.97)")


if __name__ == "__main__":
    main()
