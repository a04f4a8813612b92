"""Bidirectional streams: concurrent answers, sent as they complete; closing cancels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from conveyor.grpc.streams import as_completed


async def requests(*items: float) -> AsyncIterator[float]:
    for item in items:
        yield item


async def test_answers_come_as_they_complete() -> None:
    async def answer(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    got = [x async for x in as_completed(requests(0.06, 0.0, 0.03), answer)]
    assert got == [0.0, 0.03, 0.06]  # completion order: served concurrently, not in turn


async def test_closing_the_stream_cancels_pending_answers() -> None:
    cancelled = asyncio.Event()

    async def answer(delay: float) -> float:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return delay

    stream = as_completed(requests(0.0, 60.0), answer)
    assert await stream.__anext__() == 0.0
    await stream.aclose()
    await asyncio.wait_for(cancelled.wait(), 5)
