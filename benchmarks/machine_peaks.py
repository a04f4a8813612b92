"""`conveyor analyze --machine` against plain numpy in the same run: are the measured
ceilings what this machine's numpy does? (issue #12: within 10%.)

    python benchmarks/machine_peaks.py [--rounds 3]

Per round, alternating: the ceilings measured by conveyor.analyze.machine (fresh, not
cached), then a plain `a @ b` on 2048 x 2048 FP32 matrices with every core and a plain
`np.copyto` of 512 MiB, each timed once with perf_counter. Medians of the rounds; the
ratios conveyor / plain are printed with the 0.9-1.1 bar.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from conveyor.analyze import machine


def plain_matmul_gflops(n: int = 2048) -> float:
    a = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(2).standard_normal((n, n)).astype(np.float32)
    a @ b
    t = time.perf_counter()
    a @ b
    return 2 * n**3 / (time.perf_counter() - t) / 1e9


def plain_copy_gbs(mib: int = 512) -> float:
    src = np.ones(mib * 1024 * 1024 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    t = time.perf_counter()
    np.copyto(dst, src)
    return 2 * src.nbytes / (time.perf_counter() - t) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    ours_flops, ours_bw, plain_flops, plain_bw = [], [], [], []
    for i in range(args.rounds):
        m = machine.measure()
        ours_flops.append(m["fp32_gflops_all_cores"])
        ours_bw.append(m["bandwidth_gbs"]["copy"])
        plain_flops.append(plain_matmul_gflops())
        plain_bw.append(plain_copy_gbs())
        print(
            f"round {i + 1}: conveyor {ours_flops[-1]:.1f} GFLOP/s, {ours_bw[-1]:.1f} GB/s copy; "
            f"plain numpy {plain_flops[-1]:.1f} GFLOP/s, {plain_bw[-1]:.1f} GB/s"
        )
    f = statistics.median(ours_flops) / statistics.median(plain_flops)
    b = statistics.median(ours_bw) / statistics.median(plain_bw)
    print(f"matmul conveyor / plain = {f:.3f}, copy bandwidth conveyor / plain = {b:.3f}")
    print("(bar: each within 0.9-1.1)")


if __name__ == "__main__":
    main()
