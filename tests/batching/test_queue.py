"""Each batching rule, driven by an explicit clock (no event loop, no sleeps)."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.batching.queue import BatchQueue, QueuedRequest
from conveyor.errors import InvalidRequestError, QueueFullError
from conveyor.repository.config import DynamicBatching, QueuePolicy

MS = 1_000_000  # ns


def req(rows: int = 1, key: object = (4,), level: int = 0) -> QueuedRequest:
    return QueuedRequest({"x": np.zeros((rows, 4), np.float32)}, ["y"], rows, key, level)


def queue(max_batch: int = 8, **kw: object) -> BatchQueue:
    return BatchQueue("m", max_batch, DynamicBatching(**kw))  # type: ignore[arg-type]


def test_lone_request_is_dispatched_at_once_despite_the_delay() -> None:
    q = queue(max_queue_delay_microseconds=10_000)
    a = req()
    q.push(a, 0, None)
    assert q.take(now_ns=0, busy=0) == [a]


def test_the_first_client_back_from_a_batch_waits_for_the_others() -> None:
    q = queue(max_queue_delay_microseconds=10_000)
    first = [req() for _ in range(3)]
    for r in first:
        q.push(r, 0, None)
    assert q.take(now_ns=0, busy=0) == first  # idle: goes at once
    # its 3 clients come back one by one while the model is idle
    back = [req() for _ in range(3)]
    q.push(back[0], 20 * MS, None)
    assert q.take(now_ns=20 * MS, busy=0) is None  # 1 row < the 3 of the last batch
    assert q.next_wakeup_ns() == 30 * MS
    q.push(back[1], 21 * MS, None)
    q.push(back[2], 22 * MS, None)
    assert q.take(now_ns=22 * MS, busy=0) == back  # all 3 back: at once
    # the load went down to one client: it waits the delay once, then never again
    lone = req()
    q.push(lone, 40 * MS, None)
    assert q.take(now_ns=40 * MS, busy=0) is None
    assert q.take(now_ns=50 * MS, busy=0) == [lone]
    again = req()
    q.push(again, 60 * MS, None)
    assert q.take(now_ns=60 * MS, busy=0) == [again]


def test_while_another_batch_runs_the_queue_waits_up_to_the_delay() -> None:
    q = queue(max_queue_delay_microseconds=10_000)
    a, b = req(), req()
    q.push(a, 0, None)
    q.push(b, 1 * MS, None)
    assert q.take(now_ns=2 * MS, busy=1) is None
    assert q.next_wakeup_ns() == 10 * MS  # oldest request's arrival + delay
    assert q.take(now_ns=10 * MS, busy=1) == [a, b]


def test_full_batch_goes_at_once_even_while_busy() -> None:
    q = queue(max_batch=4, max_queue_delay_microseconds=10_000)
    items = [req() for _ in range(5)]
    for it in items:
        q.push(it, 0, None)
    assert q.take(now_ns=0, busy=1) == items[:4]
    assert len(q) == 1


def test_preferred_size_prefix_goes_while_busy() -> None:
    q = queue(max_batch=8, preferred_batch_size=[2, 4], max_queue_delay_microseconds=10_000)
    items = [req() for _ in range(5)]
    for it in items:
        q.push(it, 0, None)
    assert q.take(now_ns=0, busy=1) == items[:4]
    # one left, below every preferred size: wait for more
    assert q.take(now_ns=0, busy=1) is None


def test_zero_delay_dispatches_whatever_is_queued() -> None:
    q = queue(max_batch=8)
    items = [req() for _ in range(3)]
    for it in items:
        q.push(it, 0, None)
    assert q.take(now_ns=0, busy=1) == items


def test_multi_row_requests_are_never_split() -> None:
    q = queue(max_batch=8)
    a, b, c = req(rows=5), req(rows=4), req(rows=3)
    for it in (a, b, c):
        q.push(it, 0, None)
    assert q.take(0, busy=0) == [a]  # b would make 9 rows
    assert q.take(0, busy=0) == [b, c]


def test_requests_with_different_variable_dims_are_not_mixed() -> None:
    q = queue(max_batch=8)
    a, b, c = req(key=(4,)), req(key=(7,)), req(key=(4,))
    for it in (a, b, c):
        q.push(it, 0, None)
    assert q.take(0, busy=0) == [a, c]
    assert q.take(0, busy=0) == [b]


def test_higher_priority_is_served_first() -> None:
    q = queue(max_batch=2, priority_levels=2, default_priority_level=2)
    low1, low2, high = req(level=1), req(level=1), req(level=0)
    for it in (low1, low2, high):
        q.push(it, 0, None)
    assert q.level_for(0) == 1 and q.level_for(1) == 0
    with pytest.raises(InvalidRequestError, match=r"priority 3 is outside 1\.\.2"):
        q.level_for(3)
    assert q.take(0, busy=0) == [high, low1]
    assert q.take(0, busy=0) == [low2]


def test_bounded_queue_rejects_with_retry_after() -> None:
    q = queue(default_queue_policy=QueuePolicy(max_queue_size=2))
    q.push(req(), 0, None)
    q.push(req(), 0, None)
    with pytest.raises(QueueFullError) as info:
        q.push(req(), 0, None)
    assert info.value.headers() == {"retry-after": "1"}
    assert "full" in info.value.message


def test_timeout_reject_expires_queued_requests() -> None:
    q = queue()
    a, b = req(), req()
    q.push(a, 0, timeout_us=1000)
    q.push(b, 0, None)
    assert q.next_wakeup_ns() == 1 * MS
    assert q.expire(now_ns=MS - 1) == []
    assert q.expire(now_ns=MS) == [a]
    assert q.take(MS, busy=0) == [b]


def test_timeout_delay_moves_expired_requests_to_the_back() -> None:
    q = queue(max_batch=1, default_queue_policy=QueuePolicy(timeout_action="DELAY"))
    a, b = req(), req()
    q.push(a, 0, timeout_us=1000)
    q.push(b, 0, None)
    assert q.expire(now_ns=2 * MS) == []
    assert q.take(2 * MS, busy=0) == [b]
    assert q.take(2 * MS, busy=0) == [a]


def test_timeout_override_can_be_disallowed() -> None:
    policy = QueuePolicy(default_timeout_microseconds=5000, allow_timeout_override=False)
    q = queue(default_queue_policy=policy)
    a = req()
    q.push(a, 0, timeout_us=1)
    assert q.expire(now_ns=MS) == []
    assert q.expire(now_ns=5 * MS) == [a]


def test_without_dynamic_batching_each_request_runs_alone() -> None:
    q = BatchQueue("m", 8, None)
    a, b = req(), req()
    q.push(a, 0, None)
    q.push(b, 0, None)
    assert q.take(0, busy=0) == [a]
    assert q.take(0, busy=0) == [b]


def test_discarded_requests_are_skipped() -> None:
    q = queue()
    a, b = req(), req()
    q.push(a, 0, None)
    q.push(b, 0, None)
    q.discard(a)
    assert len(q) == 1
    assert q.take(0, busy=0) == [b]
