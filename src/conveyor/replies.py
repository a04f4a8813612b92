"""Calls that answer at once or later through a callback (the hot path's shape: no task,
no future, no loop pass), and the coroutine form of such a call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Withdrawable(Protocol):
    """What a call answering later returns: `cancel()` withdraws the request."""

    def cancel(self) -> bool: ...


class Settleable(Protocol):
    """A future, or the scheduler's Reply."""

    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


def settle(future: Settleable, outcome: object) -> None:
    """Answer `future` with a result, or an exception when `outcome` is one."""
    if future.done():  # the caller went away
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


async def awaiting(start: Callable[[Callable[[Any], None]], object], answer_type: type[T]) -> T:
    """Await a call `start(then)` that returns its answer (an `answer_type`) at once or a
    Withdrawable and calls `then` later; cancelling the coroutine withdraws the request."""
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    answer = start(partial(settle, future))
    if isinstance(answer, answer_type):
        return answer
    try:
        return await future
    except asyncio.CancelledError:
        answer.cancel()  # type: ignore[attr-defined]
        raise
