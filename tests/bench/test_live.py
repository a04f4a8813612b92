"""The live view renders phases and figures while a run goes on."""

from __future__ import annotations

import io

from rich.console import Console

from conveyor.bench.live import LiveView
from conveyor.bench.patterns import ClosedLoop
from conveyor.bench.runner import run
from conveyor.bench.targets import NullTarget


async def test_live_view_shows_warmup_and_measurement() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with LiveView("null", console) as live:
        result = await run(
            NullTarget(0.001), ClosedLoop(2), duration_s=1.2, warmup_s=0.6, live=live
        )
    text = out.getvalue()
    assert "conveyor bench · null" in text and "req/s now" in text
    assert "warm-up" in text and "measure" in text
    assert result["completed"] > 0
