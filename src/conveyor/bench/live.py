"""The live view of a run (rich): phase, progress, current rate, latency so far, errors;
refreshed twice a second on a terminal, absent otherwise (logs and CI get the summary)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from conveyor.bench.results import Recorder


class LiveView:
    def __init__(self, label: str, console: Console | None = None) -> None:
        self.label = label
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._last = (0.0, 0)

    def __enter__(self) -> LiveView:
        self._live = Live(console=self.console, refresh_per_second=4, transient=True)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def update(self, phase: str, rec: Recorder, elapsed: float, total: float) -> None:
        now = time.perf_counter()
        t0, n0 = self._last
        rate = (rec.completed - n0) / (now - t0) if t0 and now > t0 and rec.completed >= n0 else 0
        self._last = (now, rec.completed)
        table = Table(title=f"conveyor bench · {self.label}", title_justify="left", box=None)
        for column in (
            "phase",
            "time",
            "done",
            "req/s now",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
        ):
            table.add_column(column, justify="right")
        lat = rec.latency
        has = rec.completed > 0
        table.add_row(
            phase,
            f"{elapsed:.1f}/{total:g}s" if total else f"{elapsed:.1f}s",
            str(rec.completed),
            f"{rate:.1f}",
            f"{lat.get_value_at_percentile(50) / 1000:.3f}" if has else "-",
            f"{lat.get_value_at_percentile(99) / 1000:.3f}" if has else "-",
            f"{lat.get_max_value() / 1000:.3f}" if has else "-",
            str(sum(rec.errors.values())),
        )
        if self._live is not None:
            self._live.update(table)

    def phase_done(self) -> None:
        self._last = (0.0, 0)
