"""conveyor.allocator: glibc's malloc set for tensors by the serve command."""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any

import pytest

from conveyor import allocator


class FakeLibc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


def _with_libc(monkeypatch: pytest.MonkeyPatch, libc: FakeLibc, name: str = "glibc") -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: (name, "2.36"))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: libc)


def test_tune_sets_the_three_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    _with_libc(monkeypatch, libc)
    said = allocator.tune()
    assert libc.calls == [
        (allocator.M_MMAP_THRESHOLD, 32 << 20),
        (allocator.M_TRIM_THRESHOLD, 256 << 20),
        (allocator.M_TOP_PAD, 64 << 20),
    ]
    assert said.startswith("malloc tuned for tensors: blocks up to 32 MiB")


def test_a_refused_parameter_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_libc(monkeypatch, FakeLibc(answer=0))
    assert "refused" in allocator.tune()


def test_another_libc_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    _with_libc(monkeypatch, libc, name="")
    assert allocator.tune() == "malloc left as it is (not glibc)"
    assert libc.calls == []


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_real_glibc_takes_the_settings() -> None:
    # in a child: the settings are process-wide and stay for the process's life
    code = "from conveyor import allocator; print(allocator.tune())"
    out: Any = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("malloc tuned for tensors"), out.stdout + out.stderr
