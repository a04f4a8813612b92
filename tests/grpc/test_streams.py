"""Bidirectional streams: concurrent answers, sent as they complete; closing cancels.
The tests that wait run on a loop whose clock the test drives (`tests/virtual_time.py`):
the answers' delays order them exactly, whatever the machine's load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from conveyor.grpc.streams import as_completed
from tests.virtual_time import virtual


async def requests(*items: float) -> AsyncIterator[float]:
    for item in items:
        yield item


@virtual
async def test_answers_come_as_they_complete() -> None:
    async def answer(delay: float) -> AsyncIterator[float]:
        await asyncio.sleep(delay)
        yield delay

    got = [x async for x in as_completed(requests(0.06, 0.0, 0.03), answer)]
    assert got == [0.0, 0.03, 0.06]  # completion order: served concurrently, not in turn


async def test_a_request_may_have_several_answers_or_none() -> None:
    async def answer(n: float) -> AsyncIterator[float]:
        for i in range(int(n)):
            await asyncio.sleep(0)
            yield n * 10 + i

    got = [x async for x in as_completed(requests(2, 0, 3), answer)]
    assert sorted(got) == [20, 21, 30, 31, 32]
    assert [x for x in got if x >= 30] == [30, 31, 32]  # each request's own in order


async def test_an_answer_that_raises_ends_the_stream_instead_of_hanging() -> None:
    async def answer(n: float) -> AsyncIterator[float]:
        raise RuntimeError("broken")
        yield n

    got = [x async for x in as_completed(requests(1), answer)]
    assert got == []


@virtual
async def test_closing_the_stream_cancels_pending_answers() -> None:
    cancelled = asyncio.Event()

    async def answer(delay: float) -> AsyncIterator[float]:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        yield delay

    stream = as_completed(requests(0.0, 60.0), answer)
    assert await stream.__anext__() == 0.0
    await stream.aclose()
    await asyncio.wait_for(cancelled.wait(), 5)
