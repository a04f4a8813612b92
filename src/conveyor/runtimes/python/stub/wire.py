"""The wire between the core and a Python model's worker process, shared by both sides.

This package (`stub/`) runs inside the worker, possibly under another interpreter
(`EXECUTION_ENV_PATH`), so it imports only the standard library and numpy.

Frames on the control socket: `<u32 header length><u32 payload length>`, a JSON header
(a typed message with an id: its `k` says which), then the payload. Tensors travel in the
worker's shared-memory arena (one memfd: no name in /dev/shm, nothing left behind when a
process dies, and outside the pod's 64 MB /dev/shm limit), cut in four regions: two
carry core -> worker tensors, two worker -> core, one pair per batch slot (a worker may
hold a second batch while it executes the first; each `exec` names its slot). A tensor
that does not fit goes inline in the payload instead: slower, never an error.

A tensor descriptor is `[name, datatype, shape, where, offset, nbytes]`, where 0 = arena,
1 = the frame's payload. BYTES elements are each a 4-byte little-endian length followed by
the bytes (Triton's serialisation).
"""

from __future__ import annotations

import json
import mmap
import socket
import struct
import threading
from typing import Any

import numpy as np

try:  # faster where installed (the core always has it); plain json elsewhere
    import orjson

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)

    def loads(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - exercised only under a foreign interpreter

    def dumps(value: Any) -> bytes:
        return json.dumps(value, default=_json_default).encode()

    def loads(data: bytes) -> Any:
        return json.loads(data)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")


FRAME = struct.Struct("<II")
ALIGN = 64
ARENA, INLINE = 0, 1

DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in (
        ("BOOL", "?"),
        ("UINT8", "u1"),
        ("UINT16", "<u2"),
        ("UINT32", "<u4"),
        ("UINT64", "<u8"),
        ("INT8", "i1"),
        ("INT16", "<i2"),
        ("INT32", "<i4"),
        ("INT64", "<i8"),
        ("FP16", "<f2"),
        ("FP32", "<f4"),
        ("FP64", "<f8"),
        ("BYTES", "O"),
    )
}


def datatype_of(arr: np.ndarray) -> str:
    kind = arr.dtype.kind
    if kind in "OSU":
        return "BYTES"
    for name, dtype in DTYPES.items():
        if dtype == arr.dtype and name != "BYTES":
            return name
    raise TypeError(f"numpy dtype {arr.dtype} has no KServe V2 datatype")


def serialize_bytes(arr: np.ndarray) -> bytes:
    parts = []
    for x in arr.reshape(-1):
        b = x if isinstance(x, bytes) else str(x).encode()
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def deserialize_bytes(buf: memoryview | bytes, shape: tuple[int, ...]) -> np.ndarray:
    items: list[bytes] = []
    pos, end = 0, len(buf)
    while pos < end:
        (length,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        items.append(bytes(buf[pos : pos + length]))
        pos += length
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError("the other side closed the connection")
        got += k
    return buf


def read_frame(sock: socket.socket) -> tuple[dict[str, Any], bytearray]:
    """One frame from a blocking socket: (header, payload)."""
    hlen, plen = FRAME.unpack(recv_exact(sock, FRAME.size))
    header: dict[str, Any] = loads(bytes(recv_exact(sock, hlen)))
    return header, (recv_exact(sock, plen) if plen else bytearray())


class Region:
    """A bump allocator over one half of the arena. Reset by its owner once the reader
    has consumed everything written since the last reset (see the module docstring)."""

    def __init__(self, view: memoryview, base: int) -> None:
        self.view = view
        self.base = base  # offset of this region in the whole arena
        self.used = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        self.used = 0

    def alloc(self, nbytes: int) -> int:
        """Offset in the whole arena, or -1 if it does not fit."""
        with self.lock:
            start = self.used
            if start + nbytes > len(self.view):
                return -1
            self.used = start + ((nbytes + ALIGN - 1) // ALIGN) * ALIGN
        return self.base + start


SLOTS = 2


class Arena:
    def __init__(self, fd: int, size: int) -> None:
        self.size = size
        self.map = mmap.mmap(fd, size) if size else None
        whole = memoryview(self.map) if self.map is not None else memoryview(bytearray())
        self.whole = whole
        part = (size // (2 * SLOTS)) // ALIGN * ALIGN
        regions = [Region(whole[i * part : (i + 1) * part], i * part) for i in range(2 * SLOTS)]
        self.to_worker = regions[:SLOTS]  # per batch slot
        self.to_core = regions[SLOTS:]

    def close(self) -> None:
        for region in (*self.to_worker, *self.to_core):
            region.view.release()
        self.whole.release()
        if self.map is not None:
            self.map.close()


class Writer:
    """Collects one frame's tensors: into `region` where they fit, else the payload."""

    def __init__(self, region: Region | None) -> None:
        self.region = region
        self.payload: list[bytes | memoryview] = []
        self.payload_len = 0

    def tensor(self, name: str, arr: np.ndarray) -> list[Any]:
        datatype = datatype_of(arr)
        if datatype == "BYTES":
            data: bytes | memoryview = serialize_bytes(arr)
        else:
            if arr.dtype.byteorder == ">":
                arr = arr.astype(arr.dtype.newbyteorder("<"))
            # (an empty tensor has no bytes: a view with a 0 in its shape cannot be cast)
            data = np.ascontiguousarray(arr).data.cast("B") if arr.size else memoryview(b"")
        nbytes = len(data)
        shape = list(arr.shape)
        region = self.region
        if region is not None and nbytes:
            offset = region.alloc(nbytes)
            if offset >= 0:
                local = offset - region.base
                region.view[local : local + nbytes] = data
                return [name, datatype, shape, ARENA, offset, nbytes]
        offset = self.payload_len
        self.payload.append(data)
        self.payload_len += nbytes
        return [name, datatype, shape, INLINE, offset, nbytes]

    def frame(self, header: dict[str, Any]) -> list[bytes | memoryview]:
        head = dumps(header)
        return [FRAME.pack(len(head), self.payload_len), head, *self.payload]


def read_tensor(
    desc: list[Any], arena: memoryview, payload: memoryview, copy: bool
) -> tuple[str, np.ndarray]:
    """A view over the arena or payload (`copy` = own the memory: the arena is reused)."""
    name, datatype, shape, where, offset, nbytes = desc
    buf = (arena if where == ARENA else payload)[offset : offset + nbytes]
    shape = tuple(shape)
    if datatype == "BYTES":
        return name, deserialize_bytes(buf, shape)
    arr = np.frombuffer(buf, dtype=DTYPES[datatype]).reshape(shape)
    return name, arr.copy() if copy else arr
