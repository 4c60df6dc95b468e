"""The validation pool: dry runs off the event loop, a fixed number at once, a share each.

A dry run (``POST /v1/tasks/validate``, and the one inside ``POST /v1/tasks``) parses
cells for up to its time budget. Run in the threads every other blocking endpoint shares,
a few hostile ones could take them all; so each runs in a worker thread of this pool's
own limiter, at most ``total`` at once and ``per_subject`` for one token's subject. A
request beyond is refused at once, never queued: 503 when the pool is full, 429 when the
caller holds its share, both with ``Retry-After``. A slot is held until the worker's
thread ends, even when the client went away before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from longtask.api.problems import ApiProblem

T = TypeVar("T")

RETRY_AFTER_SECONDS = 2


class ValidationPool:
    """At most ``total`` dry runs at once, ``per_subject`` of them for one subject."""

    def __init__(self, total: int, per_subject: int) -> None:
        self.total = total
        self.per_subject = per_subject
        self._limiter = anyio.CapacityLimiter(total)
        self._lock = threading.Lock()
        self._running = 0
        self._by_subject: dict[str, int] = {}

    @property
    def running(self) -> int:
        """Dry runs in progress."""
        return self._running

    def _take(self, subject: str) -> None:
        with self._lock:
            if self._running >= self.total:
                raise ApiProblem(
                    503, "too-many-validations", "Service Unavailable",
                    f"the API already runs {self.total} dry runs, the most it runs at once; "
                    "retry later", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            if self._by_subject.get(subject, 0) >= self.per_subject:
                raise ApiProblem(
                    429, "too-many-validations", "Too Many Requests",
                    f"{subject} already has {self.per_subject} dry runs in progress, the "
                    "most one token may have; wait for one to end",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            self._running += 1
            self._by_subject[subject] = self._by_subject.get(subject, 0) + 1

    def _give_back(self, subject: str) -> None:
        with self._lock:
            self._running -= 1
            left = self._by_subject[subject] - 1
            if left:
                self._by_subject[subject] = left
            else:
                del self._by_subject[subject]

    async def run(self, subject: str, work: Callable[[], T]) -> T:
        """``work()`` in a worker thread of the pool, for ``subject``; :class:`ApiProblem`
        503 or 429 (with ``Retry-After``) when the pool or the subject's share is full."""
        self._take(subject)
        try:
            # Not abandoned on cancel: the slot stays taken until the thread has ended.
            return await anyio.to_thread.run_sync(work, limiter=self._limiter)
        finally:
            self._give_back(subject)
