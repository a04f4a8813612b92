"""The machine's ceilings, measured: matrix-multiply FLOP/s on one core and on all cores,
and memory bandwidth, cached per machine.

- FP32 matmul: numpy (its bundled BLAS) on n x n matrices, the best of a few runs; one
  core in a child process with every BLAS/OpenMP thread count set to 1, all cores in
  another with them unset. FP32 and BF16 with torch too when it is installed (its
  kernels use the CPU's bfloat16 units where it has them); the FP32 ceiling is the
  faster of numpy's and torch's; INT8 (int8 x int8 -> int32) with torch's `_int_mm`.
- Bandwidth: a STREAM-style triad `a = b + s*c` over arrays far larger than the caches
  (numpy runs it as two passes: 5 array transfers), and a plain copy (2 transfers); the
  ceiling is the faster of the two.
- Cached in `~/.cache/conveyor/machine-<id>.json`, the id made of the host name, the
  CPU model and the core count, so a result never passes for another machine's.
- On a GPU (torch with CUDA): FP32 and BF16 matmul on the device.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CACHE_DIR = Path(os.environ.get("CONVEYOR_CACHE", Path.home() / ".cache" / "conveyor"))
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def identity() -> dict[str, Any]:
    machine_id = ""
    with contextlib.suppress(OSError):
        machine_id = Path("/etc/machine-id").read_text().strip()
    return {
        "host": platform.node(),
        "machine_id": machine_id,
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
    }


def matmul_gflops(n: int = 2048, repeat: int = 5, dtype: str = "float32") -> float:
    """numpy matmul throughput in this process (its BLAS threads as the environment says)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def bandwidth_gbs(mib: int = 512, repeat: int = 5) -> dict[str, float]:
    """Triad and copy bandwidth (GB/s) over float64 arrays of `mib` MiB each."""
    import numpy as np

    count = mib * 1024 * 1024 // 8
    a, b, c = np.zeros(count), np.ones(count), np.full(count, 2.0)
    triad = copy = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        triad = min(triad, time.perf_counter() - t)
        t = time.perf_counter()
        np.copyto(a, b)
        copy = min(copy, time.perf_counter() - t)
    return {"triad": 5 * a.nbytes / triad / 1e9, "copy": 2 * a.nbytes / copy / 1e9}


def _torch_peaks() -> dict[str, float]:
    try:
        import torch
    except ImportError:
        return {}
    out: dict[str, float] = {}
    n = 2048
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            a @ b
            best = float("inf")
            for _ in range(5):
                if device == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                a @ b
                if device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
            out[f"{device}_{name}_gflops"] = 2 * n**3 / best / 1e9
        try:  # int8 x int8 -> int32 (VNNI / AMX on CPUs that have them)
            a8 = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
            b8 = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
            torch._int_mm(a8, b8)
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                torch._int_mm(a8, b8)
                if device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
            out[f"{device}_int8_gops"] = 2 * n**3 / best / 1e9
        except (AttributeError, RuntimeError):
            pass  # no int8 matmul in this torch for this device
    return out


def _child(code: str, one_core: bool) -> Any:
    env = dict(os.environ)
    for var in _THREAD_VARS:
        if one_core:
            env[var] = "1"
        else:
            env.pop(var, None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure() -> dict[str, Any]:
    """Measure every ceiling now (about half a minute on 2 cores)."""
    call = "import json; from conveyor.analyze import machine as m; print(json.dumps({}))"
    one = _child(call.format("m.matmul_gflops()"), one_core=True)
    every = _child(call.format("m.matmul_gflops()"), one_core=False)
    bandwidth = bandwidth_gbs()
    result: dict[str, Any] = {
        "schema": "conveyor.machine/1",
        "identity": identity(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fp32_gflops_1_core": one,
        "fp32_gflops_all_cores": every,
        "bandwidth_gbs": bandwidth,
        "peak_bandwidth_gbs": max(bandwidth.values()),
    }
    result.update(_torch_peaks())
    if "cpu_int8_gops" not in result:
        result["int8"] = "not measured: needs torch (torch._int_mm)"
    # the ceiling: the fastest FP32 matmul any library here reached (torch's oneDNN/MKL
    # kernels beat numpy's bundled BLAS on some CPUs)
    result["peak_fp32_gflops"] = max(every, result.get("cpu_fp32_gflops", 0.0))
    return result


def cache_path() -> Path:
    key = hashlib.sha256(json.dumps(identity(), sort_keys=True).encode()).hexdigest()[:12]
    return CACHE_DIR / f"machine-{key}.json"


def peaks(refresh: bool = False) -> dict[str, Any]:
    """This machine's ceilings: from the cache when measured here before, else measured."""
    path = cache_path()
    if not refresh and path.is_file():
        cached: dict[str, Any] = json.loads(path.read_text())
        if cached.get("identity") == identity():
            cached["cached"] = True
            return cached
    result = measure()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    result["cached"] = False
    return result
