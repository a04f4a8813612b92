"""ONNX Runtime's thread settings, measured (issue #11, item 3): on a small machine, do
the defaults spin a second core away from the HTTP loop?

    python benchmarks/ort_threads.py [--seconds 8] [--rounds 2]

For each configuration, one `conveyor serve` with two models: the demo `linear` (x·W,
256x256: per-request overhead) and the demo `resnet` (ResNet-18-style: compute), each
configured the same way. Per configuration: wrk at 32 connections on `linear` (req/s and
the server's CPU, from /proc), then wrk at 1 connection on `resnet` (p50 latency: what
intra-op threads are for). Configurations alternate in rounds; medians.

- default: intra-op threads = cores / instances (2 here), spinning (ORT's default);
- no-spin: the same threads, `intra_op_spinning: false`;
- 1 thread: `intra_op_thread_count: 1`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import psutil

from _harness import CACHE, conveyor_server, demo_repo, median, wrk

CONFIGS = {
    "default": "",
    "no-spin": "parameters: {intra_op_spinning: false}\n",
    "1 thread": "parameters: {intra_op_thread_count: 1}\n",
}


def repo_for(name: str, extra: str, source: Path) -> Path:
    root = CACHE / f"ort-threads-{name.replace(' ', '-')}"
    shutil.rmtree(root, ignore_errors=True)
    for model in ("linear", "resnet"):
        shutil.copytree(source / model, root / model)
        config = root / model / "config.yaml"
        text = config.read_text() if config.exists() else ""
        config.write_text(text + extra)
    return root


def body(name: str, shape: list[int]) -> bytes:
    data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    doc = {
        "inputs": [
            {
                "name": name,
                "shape": shape,
                "datatype": "FP32",
                "data": data.ravel().round(4).tolist(),
            }
        ]
    }
    return json.dumps(doc).encode()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    source = demo_repo()
    headers = {"content-type": "application/json"}
    tiny = body("x", [1, 256])
    big = body("images", [1, 3, 224, 224])
    figures: dict[str, dict[str, list[float]]] = {
        c: {"rps": [], "cpu": [], "p50": []} for c in CONFIGS
    }
    for r in range(args.rounds):
        for name, extra in CONFIGS.items():
            server = conveyor_server(repo_for(name, extra, source))
            try:
                base = f"http://{server.url}/v2/models"
                wrk(f"{base}/linear/infer", tiny, headers, 32, 2)
                proc = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
                cpu0 = sum(
                    c.cpu_times().user + c.cpu_times().system
                    for c in [proc, *proc.children(recursive=True)]
                )
                fast = wrk(f"{base}/linear/infer", tiny, headers, 32, args.seconds)
                cpu1 = sum(
                    c.cpu_times().user + c.cpu_times().system
                    for c in [proc, *proc.children(recursive=True)]
                )
                wrk(f"{base}/resnet/infer", big, headers, 1, 2)
                slow = wrk(f"{base}/resnet/infer", big, headers, 1, args.seconds)
            finally:
                server.stop()
            f = figures[name]
            f["rps"].append(fast.rps)
            f["cpu"].append((cpu1 - cpu0) / max(1.0, round(args.seconds)))
            f["p50"].append(slow.p50_ms)
            print(f"round {r + 1} {name:<9}: linear c=32 {fast.rps:7.0f} req/s, server CPU "
                  f"{f['cpu'][-1]:.2f} cores; resnet c=1 p50 {slow.p50_ms:.1f} ms")  # fmt: skip
    print("\nmedians:")
    for name, f in figures.items():
        print(f"  {name:<9} linear c=32 {median(f['rps']):7.0f} req/s at {median(f['cpu']):.2f} "
              f"cores ({median(f['rps']) / max(median(f['cpu']), 1e-9):.0f} req/s per core); "
              f"resnet c=1 p50 {median(f['p50']):.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
