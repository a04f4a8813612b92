"""One rule for bidirectional inference streams, shared by the in-process service and
the front process: requests are served concurrently, each answer sent as it is ready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


async def as_completed(
    requests: AsyncIterator[In], answer: Callable[[In], Awaitable[Out]]
) -> AsyncIterator[Out]:
    """Yield `answer(r)` for every request, in the order the answers complete. `answer`
    must not raise (errors travel in-stream as answers); the stream ends when the
    requests do and every answer is out. Closing the generator cancels what is pending."""
    done: asyncio.Queue[Out | None] = asyncio.Queue()
    pending: set[asyncio.Task[None]] = set()

    async def serve(request: In) -> None:
        await done.put(await answer(request))

    async def read() -> None:
        async for request in requests:
            task = asyncio.ensure_future(serve(request))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
        await done.put(None)

    reader = asyncio.ensure_future(read())
    try:
        while (item := await done.get()) is not None:
            yield item
    finally:
        reader.cancel()
        for task in list(pending):
            task.cancel()
