"""Logging set-up: text or JSON lines, a level changeable at run time, and the access log.

Access lines (logger `conveyor.access`, on with --access-log) carry request id, model,
version, protocol status and latency, never a payload. In JSON form every `extra` field
of a record becomes a key.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

LEVELS = ("debug", "info", "warning", "error")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


_format = "text"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record comes, not to the stream it was
    when logging was configured (which a caller, a test runner's capture say, may have
    replaced and closed since: "I/O operation on closed file")."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(level: str, fmt: str = "text") -> None:
    global _format
    _format = fmt
    handler = _StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


def set_level(level: str) -> None:
    if level.lower() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    logging.getLogger().setLevel(level.upper())


def current_format() -> str:
    """text or json: what `configure` was given (passed on to helper processes)."""
    return _format


def get_level() -> str:
    return logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
