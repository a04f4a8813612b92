"""The live view of a run (rich): phase, progress, current rate, latency so far, errors;
refreshed twice a second on a terminal, absent otherwise (logs and CI get the summary).

It is drawn when the runner updates it (on the runner's clock, the event loop's), not by
a timer thread of its own: what it shows, and when, follows the run."""

from __future__ import annotations

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
        self._last: tuple[float, int] | None = None  # (elapsed, completed) at the last update

    def __enter__(self) -> LiveView:
        self._live = Live(console=self.console, auto_refresh=False, transient=True)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def update(self, phase: str, rec: Recorder, elapsed: float, total: float) -> None:
        """`elapsed`: seconds into the phase, on the runner's clock."""
        rate = 0.0
        if self._last is not None:
            t0, n0 = self._last
            if elapsed > t0 and rec.completed >= n0:
                rate = (rec.completed - n0) / (elapsed - t0)
        self._last = (elapsed, rec.completed)
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
            self._live.update(table, refresh=True)

    def phase_done(self) -> None:
        self._last = None
