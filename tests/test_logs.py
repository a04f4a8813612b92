"""Logging configured in-process survives the stream it began with being closed (a test
runner's capture, a redirected stderr): records go to the stderr of the moment."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from conveyor import logs


def test_records_follow_the_current_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logs.configure("info")
    first.close()  # what a finished capture does
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("conveyor.test").info("still written")
    assert "still written" in second.getvalue()
    logging.getLogger().handlers.clear()
