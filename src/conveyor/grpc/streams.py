"""One rule for bidirectional inference streams, shared by the in-process service and
the front process: requests are served concurrently, each answer sent as it is ready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


async def as_completed(
    requests: AsyncIterator[In], answer: Callable[[In], AsyncIterator[Out]]
) -> AsyncIterator[Out]:
    """Yield every answer of `answer(r)` for every request, each as soon as it is ready
    (a decoupled model answers one request several times). `answer` must not raise
    (errors travel in-stream as answers); the stream ends when the requests do and every
    answer is out. Closing the generator cancels what is pending."""
    done: asyncio.Queue[Out | None] = asyncio.Queue()
    pending: set[asyncio.Task[None]] = set()

    async def serve(request: In) -> None:
        async for out in answer(request):
            await done.put(out)

    async def read() -> None:
        try:
            async for request in requests:
                task = asyncio.ensure_future(serve(request))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)
        finally:  # even if an answer broke its contract and raised: never hang
            done.put_nowait(None)

    reader = asyncio.ensure_future(read())
    try:
        while (item := await done.get()) is not None:
            yield item
    finally:
        reader.cancel()
        for task in list(pending):
            task.cancel()
