"""The batch-forming rules, as a pure state machine driven by an explicit clock.

Nothing here touches asyncio or threads, so every rule is unit-tested with a fake
clock. `Scheduler` (scheduler.py) drives it from the event loop.

Rules (DESIGN.md, "Batching semantics"):
- The caller asks `take()` only when an instance is idle. Batches grow naturally
  while every instance is busy, because nothing is taken then.
- A batch is the queue head plus the following requests with the same batch key
  (same dtypes and non-batch dims), highest priority first, up to max_batch_size
  rows. Requests are never split.
- It is dispatched at once when it is full, or when its oldest request has waited
  max_queue_delay, or when the model has nothing else executing and the batch has at
  least as many rows as the last batch dispatched (a lone request never waits for the
  timer; but when the last batch had 7 requests, their clients are coming back: the
  first one back waits for the others, at most max_queue_delay, instead of leaving
  alone and making the other 6 wait behind it). Otherwise the largest prefix that
  makes a preferred batch size is dispatched; failing that, the queue waits (at most
  max_queue_delay from the oldest request) for more requests.
- Each priority level has a bounded queue (max_queue_size, full -> QueueFullError)
  and a timeout policy: an expired request is rejected (REJECT) or moved behind all
  others (DELAY).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequestError, QueueFullError
from conveyor.repository.config import DynamicBatching, QueuePolicy

QUEUED, DELAYED, DONE = 0, 1, 2


@dataclass(slots=True, eq=False)
class QueuedRequest:
    inputs: dict[str, np.ndarray]
    outputs: list[str]
    rows: int
    key: Hashable
    level: int = 0  # priority level index: 0 is the highest
    enqueue_ns: int = 0
    deadline_ns: int = 0  # 0 = no timeout
    timeout_action: str = "REJECT"
    state: int = QUEUED
    future: Any = None  # owned by the scheduler
    dispatch_ns: int = 0
    seq: int = field(default=0)
    outcome: Any = None  # held back until earlier requests are answered (preserve_ordering)
    context: Any = None  # runtimes.base.RequestContext, for runtimes that see requests


class BatchQueue:
    def __init__(self, model: str, max_batch_size: int, batching: DynamicBatching | None) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.batching = batching if max_batch_size > 0 else None
        db = self.batching
        self.levels = max(1, db.priority_levels) if db else 1
        self.default_level = (db.default_priority_level - 1) if db and db.priority_levels else 0
        self.delay_ns = db.max_queue_delay_microseconds * 1000 if db else 0
        self.preferred = frozenset(db.preferred_batch_size) if db else frozenset()
        default_policy = db.default_queue_policy if db else QueuePolicy()
        self.policies = [
            (db.priority_queue_policy.get(i + 1, default_policy) if db else default_policy)
            for i in range(self.levels)
        ]
        self._queues: list[deque[QueuedRequest]] = [deque() for _ in range(self.levels)]
        self._counts = [0] * self.levels
        self._delayed: deque[QueuedRequest] = deque()
        self._deadlines: list[tuple[int, int, QueuedRequest]] = []
        self._seq = 0
        self.wait_until_ns = 0  # set when take() chose to wait for more requests
        self.last_rows = 0  # rows of the last batch taken: the load to expect back

    def __len__(self) -> int:
        return sum(self._counts)

    def pending(self) -> list[int]:
        """Requests waiting, per priority level (index 0 = priority 1)."""
        return list(self._counts)

    def level_for(self, priority: int) -> int:
        """Map a request's priority (1 = highest, 0 = default) to a level index."""
        if priority == 0 or self.levels == 1:
            return self.default_level
        if priority > self.levels:
            raise InvalidRequestError(
                f"priority {priority} is outside 1..{self.levels} for model '{self.model}'"
            )
        return priority - 1

    def push(self, item: QueuedRequest, now_ns: int, timeout_us: int | None) -> None:
        policy = self.policies[item.level]
        if policy.max_queue_size and self._counts[item.level] >= policy.max_queue_size:
            raise QueueFullError(
                f"the queue of model '{self.model}' is full "
                f"({policy.max_queue_size} requests waiting); retry later"
            )
        if timeout_us is None or not policy.allow_timeout_override:
            timeout_us = policy.default_timeout_microseconds
        item.enqueue_ns = now_ns
        item.state = QUEUED
        item.timeout_action = policy.timeout_action
        self._seq += 1
        item.seq = self._seq
        if timeout_us:
            item.deadline_ns = now_ns + timeout_us * 1000
            heapq.heappush(self._deadlines, (item.deadline_ns, item.seq, item))
        self._queues[item.level].append(item)
        self._counts[item.level] += 1

    def discard(self, item: QueuedRequest) -> None:
        """Forget a request whose caller went away (lazily removed from its deque)."""
        if item.state != DONE:
            item.state = DONE
            self._counts[item.level] -= 1

    def expire(self, now_ns: int) -> list[QueuedRequest]:
        """Apply timeouts; returns the requests rejected for waiting too long."""
        rejected = []
        while self._deadlines and self._deadlines[0][0] <= now_ns:
            _, _, item = heapq.heappop(self._deadlines)
            if item.state != QUEUED:
                continue
            if item.timeout_action == "DELAY":
                item.state = DELAYED
                self._delayed.append(item)
            else:
                self.discard(item)
                rejected.append(item)
        return rejected

    def _waiting(self) -> Iterator[QueuedRequest]:
        """Queued requests in service order; drops stale entries at the heads."""
        for q in self._queues:
            while q and q[0].state != QUEUED:
                q.popleft()
            for item in q:
                if item.state == QUEUED:
                    yield item
        while self._delayed and self._delayed[0].state != DELAYED:
            self._delayed.popleft()
        for item in self._delayed:
            if item.state == DELAYED:
                yield item

    def take(self, now_ns: int, busy: int, patient: bool = True) -> list[QueuedRequest] | None:
        """The next batch for an idle instance, or None to wait (see wait_until_ns).
        Within the queue delay, a batch short of max_batch_size waits while another is
        executing (`busy`) or, if `patient`, while fewer rows wait than the last batch had
        (the load coming back); impatient: a model so cheap that it runs on the loop takes
        what has arrived rather than holding it back."""
        self.wait_until_ns = 0
        waiting = self._waiting()
        head = next(waiting, None)
        if head is None:
            return None
        batch = [head]
        if self.batching is not None:
            rows = head.rows
            for item in waiting:
                if rows >= self.max_batch_size:
                    break
                if item.key != head.key:
                    continue
                if rows + item.rows > self.max_batch_size:
                    break
                batch.append(item)
                rows += item.rows
            due = head.enqueue_ns + self.delay_ns
            more_coming = busy > 0 or (patient and rows < self.last_rows)
            if rows < self.max_batch_size and more_coming and now_ns < due:
                prefix = self._preferred_prefix(batch)
                if prefix == 0:
                    self.wait_until_ns = due
                    return None
                batch = batch[:prefix]
            self.last_rows = sum(item.rows for item in batch)
        for item in batch:
            self.discard(item)
            item.dispatch_ns = now_ns
        return batch

    def _preferred_prefix(self, batch: list[QueuedRequest]) -> int:
        best, rows = 0, 0
        for i, item in enumerate(batch, 1):
            rows += item.rows
            if rows in self.preferred:
                best = i
        return best

    def next_wakeup_ns(self) -> int:
        """When the queue needs another look even if nothing happens: 0 = never."""
        while self._deadlines and self._deadlines[0][2].state != QUEUED:
            heapq.heappop(self._deadlines)
        times = [t for t in (self.wait_until_ns, self._deadlines and self._deadlines[0][0]) if t]
        return min(times) if times else 0
