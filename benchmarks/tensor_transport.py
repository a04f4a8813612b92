"""How a ResNet-size input travels: JSON vs binary tensors vs system shared memory.

1. Codec cost per request, in-process (no network): decode a 1x3x224x224 FP32 request
   and encode a 1x1000 FP32 response, in each of the three forms.
2. Served throughput of the ResNet-style model at 8 concurrent clients for each form:
   JSON and binary with wrk; binary and shared memory with perf_analyzer (the one
   client that speaks Triton's shared-memory extension).

    python benchmarks/tensor_transport.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from collections.abc import Callable
from multiprocessing import shared_memory

import numpy as np

from _harness import ROOT, conveyor_server, demo_repo, wrk
from conveyor.protocol import v2
from conveyor.protocol.tensors import from_bytes, to_bytes
from conveyor.sharedmem import SharedMemoryRegistry, ShmRef
from conveyor.types import InferResponse

X = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
Y = np.random.default_rng(1).random((1, 1000), dtype=np.float32)


def per_call_us(fn: Callable[[], object], seconds: float = 2.0) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return (time.perf_counter() - start) / n * 1e6


def bodies() -> dict[str, tuple[bytes, dict[str, str]]]:
    js = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "shape": list(X.shape),
                    "datatype": "FP32",
                    "data": X.ravel().tolist(),
                }
            ]
        }
    ).encode()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "shape": list(X.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": X.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return {
        "json": (js, {"content-type": "application/json"}),
        "binary": (header + X.tobytes(), {"inference-header-content-length": str(len(header))}),
    }


def codec_costs() -> dict[str, float]:
    b = bodies()
    js, binary = b["json"][0], b["binary"][0]
    hlen = int(b["binary"][1]["inference-header-content-length"])
    out = {}

    def json_round() -> None:
        req = v2.decode_request(js, None, "resnet", "")
        v2.encode_response(InferResponse("resnet", "1", {"logits": Y}), req)

    def binary_round() -> None:
        req = v2.decode_request(binary, hlen, "resnet", "")
        v2.encode_response(InferResponse("resnet", "1", {"logits": Y}), req)

    shm_in = shared_memory.SharedMemory(create=True, size=X.nbytes)
    shm_out = shared_memory.SharedMemory(create=True, size=Y.nbytes)
    try:
        np.ndarray(X.shape, np.float32, buffer=shm_in.buf)[:] = X
        registry = SharedMemoryRegistry()
        registry.register("in", shm_in.name, 0, X.nbytes)
        registry.register("out", shm_out.name, 0, Y.nbytes)
        ref_in, ref_out = ShmRef("in", 0, X.nbytes), ShmRef("out", 0, Y.nbytes)

        def shm_round() -> None:
            from_bytes("images", "FP32", X.shape, registry.read("in", ref_in))
            registry.write("out", ref_out, to_bytes(Y))

        out["json"] = per_call_us(json_round)
        out["binary"] = per_call_us(binary_round)
        out["shared memory"] = per_call_us(shm_round)
        registry.unregister()
    finally:
        for s in (shm_in, shm_out):
            s.close()
            s.unlink()
    return out


def perf_analyzer(url: str, shm: bool, seconds: float) -> float:
    cmd = [
        str(ROOT / "scripts" / "perf_analyzer.sh"),
        "-m",
        "resnet",
        "-u",
        url,
        "--concurrency-range",
        "8",
        "-p",
        str(int(seconds * 1000)),
        "--max-trials",
        "3",
        "--stability-percentage",
        "999",
    ]
    if shm:
        cmd += ["--shared-memory", "system", "--output-shared-memory-size", "4000"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    m = re.search(r"Concurrency: 8, throughput: ([\d.]+) infer/sec", out)
    if not m:
        print(out[-1000:])
        return 0.0
    return float(m.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=10)
    args = p.parse_args()
    print("codec cost per request (decode 1x3x224x224 FP32 in, encode 1x1000 FP32 out):")
    costs = codec_costs()
    for form, us in costs.items():
        print(f"  {form:<14}{us:10.1f} us   (x{us / costs['shared memory']:.0f} shared memory)")

    repo = demo_repo()
    server = conveyor_server(repo, "--model-control-mode", "explicit", "--load-model", "resnet")
    try:
        url = f"http://{server.url}/v2/models/resnet/infer"
        print("served, 8 clients (images/s):")
        for form, (body, headers) in bodies().items():
            r = wrk(url, body, headers, 8, args.seconds)
            print(f"  wrk {form:<14}{r.rps:8.1f}   p99 {r.p99_ms:.0f} ms  errors {r.errors}")
        for shm in (False, True):
            rate = perf_analyzer(server.url, shm, args.seconds)
            print(f"  perf_analyzer {'shared memory' if shm else 'binary':<14}{rate:8.1f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
