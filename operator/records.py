"""The operator's side of the task record protocol (:mod:`longtask.taskrecord`).

The operator reads the runner's record (its source of truth for success, failure and
progress) and writes two columns of it: ``hold``, the pause or terminate it carries out,
before it suspends or deletes the run Job, and the release before it resumes or creates
it; and ``rate_limit``, ``spec.rateLimit`` whenever the record holds another.
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from psycopg2.extras import RealDictCursor

from longtask import taskrecord
from longtask.db import Pool
from longtask.model import Task
from longtask.taskrecord import RunnerRecord

log = logging.getLogger("longtask.operator")


class RecordStore(Protocol):
    """What the handlers need of the runner's database."""

    def read(self, uid: str) -> RunnerRecord | None:
        """The task's record, or ``None`` while nobody has written one; raises
        ``psycopg2.Error`` when the database cannot answer."""
        ...

    def hold(self, task: Task, hold: str | None) -> None:
        """Hold the task's run (``"Paused"``/``"Terminated"``) or release it (``None``)."""
        ...

    def set_rate_limit(self, task: Task, rate_limit: int | None) -> bool:
        """Write the task's rate limit (rows per second, ``None``: unlimited) into its
        record; False when a chunk kept the row lock too long (nothing written)."""
        ...


def record_of(task: Task) -> taskrecord.TaskRecord:
    """The task's identity as its record holds it."""
    return taskrecord.TaskRecord(uid=uuid.UUID(task.uid), type=task.spec.type,
                                 organization=task.spec.organization,
                                 params=dict(task.spec.params), name=task.name,
                                 namespace=task.namespace)


class Records:
    """The runner's database through a small pool (:class:`longtask.db.Pool`): reads in
    read-only autocommit sessions, holds in a transaction of their own.

    ``read`` raises ``psycopg2.Error`` or :class:`longtask.db.DatabaseUnavailable` when the
    database cannot answer: a caller must not take that for "no record", or a completed Job
    would look like a mismatch.
    """

    def __init__(self, dsn: str, max_connections: int = 4) -> None:
        self._pool = Pool(dsn, max_connections, application_name="longtask-operator")
        self._pool.ping()  # an unreachable database stops the start-up, as it always did

    def read(self, uid: str) -> RunnerRecord | None:
        """The task's record, or ``None`` while the runner has written no row."""
        with (self._pool.connection(readonly=True) as conn,
              conn.cursor(cursor_factory=RealDictCursor) as cur):
            return taskrecord.read(cur, uid)

    def hold(self, task: Task, hold: str | None) -> None:
        """Hold the task's run (``"Paused"``/``"Terminated"``) or release it (``None``).

        Done before the Job is suspended or deleted, so no chunk commits after the operator
        acted, even before the pod gets its SIGTERM (see :func:`longtask.taskrecord.hold`).
        """
        with self._pool.connection(autocommit=False) as conn:
            if not taskrecord.hold(conn, record_of(task), hold):
                log.warning("hold_not_set", extra={"task": task.name, "hold": hold,
                                                   "why": "a runner kept its chunk's lock"})

    def set_rate_limit(self, task: Task, rate_limit: int | None) -> bool:
        """Write ``spec.rateLimit`` into the record (:func:`longtask.taskrecord.set_rate_limit`);
        the runner's next chunk keeps to it."""
        with self._pool.connection(autocommit=False) as conn:
            written = taskrecord.set_rate_limit(conn, task.uid, rate_limit)
        if not written:
            log.warning("rate_limit_not_set", extra={"task": task.name, "rate_limit": rate_limit,
                                                     "why": "a runner kept its chunk's lock"})
        return written

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()
