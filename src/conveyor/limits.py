"""Request limits beyond the body size: each a clear 4xx that names the limit and how to
raise it, checked before the request costs more than its parsing.

- HTTP header block (request line and headers): `max_header_bytes` -> 431;
- inputs per request, and outputs asked for: `max_tensors` -> 400;
- elements of one tensor (by its shape): `max_tensor_elements` -> 400;
- bytes of one BYTES element: `max_bytes_element` -> 400;
- JSON nesting (REST: V2 and TF Serving bodies): `max_json_depth` -> 400 (orjson itself
  stops at 1024).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequestError
from conveyor.types import InferRequest


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 16 * 1024
    max_tensors: int = 128
    max_tensor_elements: int = 1 << 28
    max_bytes_element: int = 64 << 20
    max_json_depth: int = 32

    def check_request(self, request: InferRequest) -> None:
        """Counts, element counts and BYTES element sizes of a decoded request (every
        protocol's; shared-memory inputs by their declared shapes)."""
        n_inputs = len(request.inputs) + len(request.shm_inputs)
        if n_inputs > self.max_tensors:
            raise InvalidRequestError(
                f"the request has {n_inputs} inputs; the limit is {self.max_tensors} "
                "(--max-tensors)"
            )
        if request.outputs is not None and len(request.outputs) > self.max_tensors:
            raise InvalidRequestError(
                f"the request asks for {len(request.outputs)} outputs; the limit is "
                f"{self.max_tensors} (--max-tensors)"
            )
        for name, arr in request.inputs.items():
            self._elements(name, arr.size)
            if arr.dtype.kind == "O":
                self._bytes_elements(name, arr)
        for name, (_, _, shape) in request.shm_inputs.items():
            self._elements(name, int(np.prod(shape, dtype=np.int64)) if shape else 1)

    def _elements(self, name: str, n: int) -> None:
        if n > self.max_tensor_elements:
            raise InvalidRequestError(
                f"input '{name}' has {n} elements; the limit is {self.max_tensor_elements} "
                "(--max-tensor-elements)"
            )

    def _bytes_elements(self, name: str, arr: np.ndarray) -> None:
        limit = self.max_bytes_element
        flat = arr.reshape(-1)
        try:
            if max(map(len, flat), default=0) <= limit:  # at C speed: the common case
                return
        except TypeError:
            pass  # not all bytes: validation names the datatype
        for i, x in enumerate(flat):
            if isinstance(x, bytes | str) and len(x) > limit:
                raise InvalidRequestError(
                    f"input '{name}' element {i} is {len(x)} bytes; the limit for one BYTES "
                    f"element is {limit} (--max-bytes-element)"
                )

    def check_json_depth(
        self, doc: Any, what: str = "request body", raw: bytes | None = None
    ) -> None:
        """`raw`: the JSON text `doc` was parsed from. JSON cannot nest deeper than it has
        opening brackets (those inside strings only add to the count), so a text with no
        more than the limit needs no walk: the common case."""
        if raw is not None and _brackets_at_most(raw, self.max_json_depth):
            return
        if json_depth_exceeds(doc, self.max_json_depth):
            raise InvalidRequestError(
                f"the {what}'s JSON nests deeper than {self.max_json_depth} levels "
                "(--max-json-depth)"
            )


def _brackets_at_most(raw: bytes, limit: int) -> bool:
    """Whether `raw` holds at most `limit` opening brackets ('[' and '{'). Found one by
    one (memchr) and given up past the limit: a V2 request's handful costs a few finds,
    where counting them scans every byte twice."""
    n = 0
    find = raw.find
    for bracket in (0x5B, 0x7B):  # '[', '{'
        i = find(bracket)
        while i >= 0:
            n += 1
            if n > limit:
                return False
            i = find(bracket, i + 1)
    return True


def json_depth_exceeds(doc: Any, limit: int) -> bool:
    """Whether containers nest deeper than `limit`. Every object is walked, and every
    list of objects; of a list of lists (a tensor's rows) only the first, as a tensor's
    rows are alike (a ragged one fails its shape check); a list that starts with a
    number or string is data. So long data costs nothing."""
    containers = (dict, list)
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values() if isinstance(v, containers)]
        elif isinstance(value, list) and value:
            if isinstance(value[0], list):
                stack.append((value[0], depth + 1))
            elif isinstance(value[0], dict):  # e.g. V2's inputs
                stack += [(v, depth + 1) for v in value if isinstance(v, containers)]
    return False
