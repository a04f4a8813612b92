"""ResNet-style model: served throughput at saturation ÷ in-process ONNX Runtime at its best.

In-process: the same ONNX file on ONNX Runtime with no server, in the configurations a
user would try on this machine (2 sessions x 1 thread in 2 threads; 1 session x 2
threads) at batch sizes 1, 4, 8; the best images/s is the reference.
Served: `conveyor serve` with the demo config (2 instances, 1 thread each, dynamic
batching up to 8, preferred 4/8), binary tensors (1x3x224x224 FP32 per request), wrk at
8 connections; images/s counted by the server over steady load (wrk's own figure, which
includes filling the pipeline, is printed beside it). Rounds alternate between in-process
and served.

Target (issue #2): served / in-process best >= 0.90.

    python benchmarks/resnet_throughput.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np
import onnxruntime as ort

from _harness import conveyor_server, demo_repo, median, served_steady, wrk


def in_process(model: str, sessions: int, threads: int, batch: int, seconds: float) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = [
        ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        for _ in range(sessions)
    ]
    x = np.random.default_rng(0).random((batch, 3, 224, 224), dtype=np.float32)
    for s in sess:
        s.run(None, {"images": x})
    counts = [0] * sessions
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        while time.perf_counter() < stop:
            sess[i].run(None, {"images": x})
            counts[i] += batch

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(sessions)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    repo = demo_repo()
    model = str(repo / "resnet" / "1" / "model.onnx")

    print("in-process ONNX Runtime, choosing the best configuration (images/s):")
    configs = [(s, t, b) for s, t in ((2, 1), (1, 2)) for b in (1, 4, 8)]
    scores = {}
    for sessions, threads, batch in configs:
        scores[(sessions, threads, batch)] = in_process(model, sessions, threads, batch, 4)
        print(
            f"  {sessions} session(s) x {threads} thread(s), batch {batch}: "
            f"{scores[(sessions, threads, batch)]:8.1f}"
        )
    best_cfg = max(scores, key=lambda k: scores[k])

    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "shape": [1, 3, 224, 224],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
    body = header + x.tobytes()
    # Rounds alternate between the two, so drift on this shared machine hits both alike.
    local, served = [], []
    for _ in range(args.rounds):
        local.append(in_process(model, *best_cfg, args.seconds))
        server = conveyor_server(repo, "--model-control-mode", "explicit", "--load-model", "resnet")
        try:
            url = f"http://{server.url}/v2/models/resnet/infer"
            wrk(url, body, headers, 8, 2)  # warm-up
            rate, r = served_steady(server.url, "resnet", body, headers, 8, args.seconds)
            served.append(rate)
            print(
                f"  round: in-process {local[-1]:.1f}, served {rate:.1f} images/s counted "
                f"by the server (wrk: {r.rps:.1f} over its whole run; 8 clients, p50 "
                f"{r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms, errors {r.errors})"
            )
        finally:
            server.stop()
    s, t, b = best_cfg
    print(f"\nin-process best configuration: {s} session(s) x {t} thread(s), batch {b}")
    print(
        f"served / in-process (medians of {args.rounds} alternating rounds) = "
        f"{median(served) / median(local):.3f}   (target >= 0.90)"
    )


if __name__ == "__main__":
    main()
