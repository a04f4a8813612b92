"""The C allocator, tuned for tensors (`conveyor serve --malloc tuned`, the default).

glibc's malloc gives a block over its mmap threshold (128 KiB, raised as blocks are freed,
to 32 MiB at most) pages of its own and hands them back to the kernel when it is freed,
and gives a heap's free top back beyond the trim threshold. A model's activations and the
requests' tensors are such blocks, made and freed on every batch, so each batch faults its
working set in again, page by page, zeroed by the kernel: ResNet-50 at batch 8 under
PyTorch took 9-13 thousand minor faults per batch in-process and 24-32 thousand served,
with 49-66 ms of kernel CPU per batch (getrusage and /proc on a 2-vCPU VM,
docs/runtimes.md).

`tune()` keeps that memory in the process: blocks up to 32 MiB come from the heap (glibc's
limit for the threshold), a heap keeps up to 256 MiB free at its top, and grows by 64 MiB
at a time. The same batches then take a few hundred faults. What it costs: the process
holds on to the memory of its largest batches (RSS stays near its peak instead of falling
between batches) — what a server with steady traffic does anyway, and what jemalloc or
tcmalloc, which Triton and TorchServe recommend preloading for the same reason, also do.

Only glibc has these knobs; elsewhere `tune()` changes nothing and says so. It acts on the
whole process, so only the process's entry point calls it (`conveyor serve`), never a
library import.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt(3) parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 256 * 1024 * 1024
TOP_PAD = 64 * 1024 * 1024

SETTINGS = (
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    (M_TOP_PAD, TOP_PAD),
)


def tune() -> str:
    """Set glibc's malloc for tensors; what was done, as a sentence for the log."""
    if platform.libc_ver()[0] != "glibc":
        return "malloc left as it is (not glibc)"
    libc = ctypes.CDLL(None)  # the process's own symbols: glibc's mallopt
    refused = [param for param, value in SETTINGS if libc.mallopt(param, value) != 1]
    if refused:
        return f"malloc: glibc refused mallopt parameters {refused}"
    return (
        f"malloc tuned for tensors: blocks up to {MMAP_THRESHOLD >> 20} MiB from the heap, "
        f"{TRIM_THRESHOLD >> 20} MiB kept free, heaps grow by {TOP_PAD >> 20} MiB"
    )
