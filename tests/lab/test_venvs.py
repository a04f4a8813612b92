"""Peer virtualenvs: reused while the pins stay the same; a failed install names pip's
error and leaves nothing that looks installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.lab import venvs
from conveyor.lab.process import PeerError


def test_reused_while_the_pins_are_the_same(tmp_path: Path) -> None:
    first = tmp_path / "venvs" / f"x-{venvs._key(['a==1'])}"
    first.mkdir(parents=True)
    (first / ".ready").write_text("1\n")
    (first / "freeze.txt").write_text("a==1\nB_c==2.0\n")
    said: list[str] = []
    assert venvs.ensure(tmp_path, "x", ["a==1"], said.append) == first
    assert said == []  # nothing installed
    assert venvs.version_of(first, "a") == "1" and venvs.version_of(first, "b-c") == "2.0"
    assert venvs.version_of(first, "missing") is None
    assert venvs._key(["a==2"]) != venvs._key(["a==1"])


def test_a_failed_install_is_a_peer_error(tmp_path: Path) -> None:
    said: list[str] = []
    with pytest.raises(PeerError, match="installing broken failed") as exc:
        venvs.ensure(tmp_path, "broken", ["./no-such-project-dir"], said.append)
    assert "no-such-project-dir" in str(exc.value)
    root = tmp_path / "venvs" / f"broken-{venvs._key(['./no-such-project-dir'])}"
    assert not (root / ".ready").exists()
    assert said and "installing broken" in said[0]
