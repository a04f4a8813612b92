"""The live view renders phases and figures while a run goes on. The run is on a loop
whose clock the test drives (`tests/virtual_time.py`): the view is drawn at each of the
runner's updates, twice a (driven) second, so what it shows is exact."""

from __future__ import annotations

import io

from rich.console import Console

from conveyor.bench.live import LiveView
from conveyor.bench.patterns import ClosedLoop
from conveyor.bench.runner import run
from conveyor.bench.targets import NullTarget
from tests.virtual_time import virtual


@virtual
async def test_live_view_shows_warmup_and_measurement() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with LiveView("null", console) as live:
        result = await run(
            NullTarget(0.001), ClosedLoop(2), duration_s=1.2, warmup_s=0.6, live=live
        )
    text = out.getvalue()
    assert "conveyor bench · null" in text and "req/s now" in text
    # the updates at 0 and 0.5 s of each phase, and 1.0 s of the measurement
    assert "warm-up" in text and "0.0/0.6s" in text and "0.5/0.6s" in text
    assert "measure" in text and "0.5/1.2s" in text and "1.0/1.2s" in text
    assert "1996.0" in text and "2000.0" in text  # the current rate: 2 clients, 1 ms each
    assert 2390 <= result["completed"] <= 2400  # 2 x 1200 less the loop's ticks
