"""A reader for protobuf text format, enough for Triton's `config.pbtxt`.

It needs no schema: a field seen once is a scalar or a dict, a field seen several
times (or written as `[a, b]`) is a list. `config.parse_config` accepts either
for the repeated fields.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?[fF]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}\[\]:,;<>])
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}


class PbtxtError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise PbtxtError(f"unexpected character {text[pos]!r} on line {line}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group(), text.count("\n", 0, pos) + 1))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def _peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _next(self) -> tuple[str, str, int]:
        tok = self._peek()
        if tok is None:
            raise PbtxtError("unexpected end of input")
        self.i += 1
        return tok

    def _expect(self, value: str) -> None:
        _, text, line = self._next()
        if text != value:
            raise PbtxtError(f"expected {value!r} on line {line}, got {text!r}")

    def message(self, closing: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        while True:
            tok = self._peek()
            if tok is None:
                if closing is not None:
                    raise PbtxtError(f"missing {closing!r} at end of input")
                return fields
            if tok[1] == closing:
                self.i += 1
                return fields
            if tok[1] in (",", ";"):
                self.i += 1
                continue
            kind, name, line = self._next()
            if kind != "ident":
                raise PbtxtError(f"expected a field name on line {line}, got {name!r}")
            nxt = self._peek()
            if nxt is not None and nxt[1] == ":":
                self.i += 1
                nxt = self._peek()
            if nxt is None:
                raise PbtxtError(f"field {name!r} has no value")
            value: Any
            if nxt[1] in ("{", "<"):
                self.i += 1
                value = self.message("}" if nxt[1] == "{" else ">")
            elif nxt[1] == "[":
                self.i += 1
                value = self._list()
            else:
                value = self._scalar()
            if name in fields:
                prev = fields[name]
                if isinstance(value, list):
                    fields[name] = (prev if isinstance(prev, list) else [prev]) + value
                else:
                    fields[name] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                fields[name] = value

    def _list(self) -> list[Any]:
        items: list[Any] = []
        while True:
            tok = self._peek()
            if tok is None:
                raise PbtxtError("unterminated list")
            if tok[1] == "]":
                self.i += 1
                return items
            if tok[1] == ",":
                self.i += 1
                continue
            if tok[1] in ("{", "<"):
                self.i += 1
                items.append(self.message("}" if tok[1] == "{" else ">"))
            else:
                items.append(self._scalar())

    def _scalar(self) -> Any:
        kind, text, line = self._next()
        if kind == "string":
            parts = [text]
            # adjacent string literals concatenate, as in protobuf
            while (tok := self._peek()) is not None and tok[0] == "string":
                parts.append(self._next()[1])
            return "".join(
                re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), p[1:-1])
                for p in parts
            )
        if kind == "number":
            num = text.rstrip("fF")
            if re.fullmatch(r"[-+]?\d+", num):
                return int(num)
            return float(num)
        if kind == "ident":
            if text in ("true", "True"):
                return True
            if text in ("false", "False"):
                return False
            return text  # enum value such as TYPE_FP32
        raise PbtxtError(f"unexpected {text!r} on line {line}")


def loads(text: str) -> dict[str, Any]:
    """Parse protobuf text format into nested dicts and lists."""
    return _Parser(text).message(None)
