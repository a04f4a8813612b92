"""ResNet-style model: served throughput at saturation ÷ in-process ONNX Runtime at its best.

In-process: the same ONNX file on ONNX Runtime with no server, in the configurations a
user would try on this machine (2 sessions x 1 thread in 2 threads; 1 session x 2
threads) at batch sizes 1, 4, 8; the best images/s is the reference.
Served: `conveyor serve` with the demo config (2 instances, 1 thread each, dynamic
batching up to 8, preferred 4/8), binary tensors (1x3x224x224 FP32 per request), wrk at
8 and 16 connections.

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

from _harness import conveyor_server, demo_repo, wrk


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
    args = p.parse_args()
    repo = demo_repo()
    model = str(repo / "resnet" / "1" / "model.onnx")

    print("in-process ONNX Runtime (images/s):")
    best, best_cfg = 0.0, ""
    for sessions, threads in ((2, 1), (1, 2)):
        for batch in (1, 4, 8):
            rate = in_process(model, sessions, threads, batch, args.seconds)
            cfg = f"{sessions} session(s) x {threads} thread(s), batch {batch}"
            print(f"  {cfg:<40} {rate:8.1f}")
            if rate > best:
                best, best_cfg = rate, cfg

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
    server = conveyor_server(repo, "--model-control-mode", "explicit", "--load-model", "resnet")
    try:
        url = f"http://{server.url}/v2/models/resnet/infer"
        wrk(url, header + x.tobytes(), headers, 8, 3)  # warm-up
        print("served (conveyor serve, binary tensors, wrk):")
        served = 0.0
        for clients in (8, 16):
            r = wrk(url, header + x.tobytes(), headers, clients, args.seconds)
            print(
                f"  {clients:>2} clients: {r.rps:8.1f} images/s  p50 {r.p50_ms:.1f} ms  "
                f"p99 {r.p99_ms:.1f} ms  errors {r.errors}"
            )
            served = max(served, r.rps)
    finally:
        server.stop()
    print(f"\nin-process best: {best:.1f} images/s ({best_cfg})")
    print(f"served / in-process best = {served / best:.3f}   (target >= 0.90)")


if __name__ == "__main__":
    main()
