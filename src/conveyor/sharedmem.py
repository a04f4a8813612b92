"""System shared memory: clients register POSIX shared-memory regions, then send or
receive tensors through them instead of the request body (Triton's extension).

A region is a window (offset, byte_size) into a shared-memory object such as the ones
`tritonclient.utils.shared_memory` creates. Inputs become numpy views over the mapping
(no copy); outputs are written into it.
"""

from __future__ import annotations

import mmap
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import InvalidRequestError

SHM_ROOT = Path("/dev/shm")
CUDA_SHM_UNSUPPORTED = (
    "CUDA shared memory is not supported by this server; use system shared memory"
)


@dataclass(frozen=True, slots=True)
class ShmRef:
    """Where one tensor lives: a registered region, an offset in it and a size."""

    region: str
    offset: int
    byte_size: int

    @classmethod
    def from_params(cls, name: str, params: dict[str, Any]) -> ShmRef:
        region = params.get("shared_memory_region")
        size = params.get("shared_memory_byte_size")
        offset = params.get("shared_memory_offset", 0)
        if not isinstance(region, str) or not region:
            raise InvalidRequestError(f"'{name}': shared_memory_region must be a region name")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidRequestError(f"'{name}': shared_memory_byte_size must be an int >= 0")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidRequestError(f"'{name}': shared_memory_offset must be an int >= 0")
        return cls(region, offset, size)


@dataclass(slots=True)
class _Region:
    name: str
    key: str
    offset: int
    byte_size: int
    mapping: mmap.mmap


class SharedMemoryRegistry:
    def __init__(self) -> None:
        self._regions: dict[str, _Region] = {}
        self._lock = threading.Lock()  # register/unregister may come from any transport

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        if not name:
            raise InvalidRequestError("a shared-memory region needs a name")
        if name in self._regions:
            raise InvalidRequestError(f"shared-memory region '{name}' is already registered")
        path = SHM_ROOT / key.lstrip("/")
        if not key or "/" in key.lstrip("/"):
            raise InvalidRequestError(f"invalid shared-memory key {key!r}")
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise InvalidRequestError(
                f"cannot open shared-memory object {key!r}: {exc.strerror}"
            ) from None
        try:
            size = os.fstat(fd).st_size
            if offset + byte_size > size or byte_size <= 0:
                raise InvalidRequestError(
                    f"shared-memory object {key!r} has {size} bytes: cannot map "
                    f"{byte_size} bytes at offset {offset}"
                )
            mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        with self._lock:
            self._regions[name] = _Region(name, key, offset, byte_size, mapping)

    def unregister(self, name: str = "") -> None:
        """Forget one region (or all). The mapping closes once no tensor views it."""
        with self._lock:
            if name:
                self._regions.pop(name, None)
            else:
                self._regions.clear()

    def status(self, name: str = "") -> dict[str, dict[str, Any]]:
        regions = list(self._regions.values())
        if name:
            regions = [r for r in regions if r.name == name]
            if not regions:
                raise InvalidRequestError(f"no shared-memory region '{name}' is registered")
        return {
            r.name: {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
            for r in regions
        }

    def _window(self, what: str, ref: ShmRef, size: int) -> tuple[_Region, int]:
        region = self._regions.get(ref.region)
        if region is None:
            raise InvalidRequestError(
                f"{what}: shared-memory region '{ref.region}' is not registered"
            )
        if ref.offset + size > region.byte_size:
            raise InvalidRequestError(
                f"{what}: {size} bytes at offset {ref.offset} do not fit shared-memory region "
                f"'{ref.region}' of {region.byte_size} bytes"
            )
        return region, region.offset + ref.offset

    def read(self, what: str, ref: ShmRef) -> memoryview:
        region, start = self._window(what, ref, ref.byte_size)
        return memoryview(region.mapping)[start : start + ref.byte_size]

    def write(self, what: str, ref: ShmRef, data: bytes | bytearray | memoryview) -> None:
        size = len(memoryview(data).cast("B"))
        if size > ref.byte_size:
            raise InvalidRequestError(
                f"{what} is {size} bytes, more than its shared_memory_byte_size {ref.byte_size}"
            )
        region, start = self._window(what, ref, size)
        region.mapping[start : start + size] = memoryview(data).cast("B")
