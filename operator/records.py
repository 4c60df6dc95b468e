"""The operator's side of the task record protocol (:mod:`longtask.taskrecord`).

The operator reads the runner's record (its source of truth for success, failure and
progress) and writes one column of it, ``hold``: the pause or terminate it carries out,
before it suspends or deletes the run Job, and the release before it resumes or creates it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from psycopg2.extras import RealDictCursor
from psycopg2.pool import ThreadedConnectionPool

from longtask import taskrecord
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


def record_of(task: Task) -> taskrecord.TaskRecord:
    """The task's identity as its record holds it."""
    return taskrecord.TaskRecord(uid=uuid.UUID(task.uid), type=task.spec.type,
                                 organization=task.spec.organization,
                                 params=dict(task.spec.params), name=task.name,
                                 namespace=task.namespace)


class Records:
    """A small pool of connections to the runner's database: reads in read-only autocommit
    sessions, holds in a transaction of their own.

    ``read`` raises ``psycopg2.Error`` when the database cannot answer: a caller must not
    take that for "no record", or a completed Job would look like a mismatch.
    """

    def __init__(self, dsn: str, max_connections: int = 4) -> None:
        self._pool = ThreadedConnectionPool(
            1, max_connections, dsn, connect_timeout=5, application_name="longtask-operator"
        )

    def read(self, uid: str) -> RunnerRecord | None:
        """The task's record, or ``None`` while the runner has written no row."""
        conn: Any = self._pool.getconn()
        try:
            conn.set_session(readonly=True, autocommit=True)
            with conn.cursor(cursor_factory=RealDictCursor) as cur:
                return taskrecord.read(cur, uid)
        finally:
            self._pool.putconn(conn)

    def hold(self, task: Task, hold: str | None) -> None:
        """Hold the task's run (``"Paused"``/``"Terminated"``) or release it (``None``).

        Done before the Job is suspended or deleted, so no chunk commits after the operator
        acted, even before the pod gets its SIGTERM (see :func:`longtask.taskrecord.hold`).
        """
        conn: Any = self._pool.getconn()
        try:
            conn.set_session(readonly=False, autocommit=False)
            if not taskrecord.hold(conn, record_of(task), hold):
                log.warning("hold_not_set", extra={"task": task.name, "hold": hold,
                                                   "why": "a runner kept its chunk's lock"})
        except BaseException:
            conn.rollback()
            raise
        finally:
            self._pool.putconn(conn)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.closeall()
