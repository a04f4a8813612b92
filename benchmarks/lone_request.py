"""A lone request never waits for the batching timer.

One client in a closed loop (wrk, 1 connection) against the same model served twice in
one run: with dynamic batching and max_queue_delay_microseconds = 10000, and with
batching off. Rounds alternate; the medians of p50 are compared. Done for the tiny
`linear` model (where any wait would show most) and the ResNet-style model.

Target (issue #2): p50 with batching / p50 without <= 1.10.

    python benchmarks/lone_request.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from _harness import conveyor_server, demo_repo, median, model_repo, wrk

BATCHING = """max_batch_size: 8
dynamic_batching: {max_queue_delay_microseconds: 10000}
instance_group: [{count: 1, kind: KIND_CPU}]
parameters: {intra_op_thread_count: 1}
"""
NO_BATCHING = """max_batch_size: 8
instance_group: [{count: 1, kind: KIND_CPU}]
parameters: {intra_op_thread_count: 1}
"""


def request(model: str) -> tuple[bytes, dict[str, str]]:
    shape = [1, 256] if model == "linear" else [1, 3, 224, 224]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    name = "x" if model == "linear" else "images"
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": shape,
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ]
        }
    ).encode()
    return header + x.tobytes(), {"inference-header-content-length": str(len(header))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    source = demo_repo()
    repo = model_repo(
        "lone-request",
        {
            f"{m}_{mode}": (m, cfg)
            for m in ("linear", "resnet")
            for mode, cfg in (("batching", BATCHING), ("plain", NO_BATCHING))
        },
        source,
    )
    server = conveyor_server(repo)
    try:
        for model in ("linear", "resnet"):
            body, headers = request(model)
            p50: dict[str, list[float]] = {"batching": [], "plain": []}
            for mode in p50:  # warm-up
                wrk(f"http://{server.url}/v2/models/{model}_{mode}/infer", body, headers, 1, 2)
            for _ in range(args.rounds):
                for mode in p50:
                    url = f"http://{server.url}/v2/models/{model}_{mode}/infer"
                    p50[mode].append(wrk(url, body, headers, 1, args.seconds).p50_ms)
            on, off = median(p50["batching"]), median(p50["plain"])
            print(
                f"{model:<7} p50 with 10 ms batching window {on:.3f} ms, without {off:.3f} ms: "
                f"ratio {on / off:.3f} (target <= 1.10)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
