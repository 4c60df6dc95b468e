"""Reading the runner's record (``longtask.tasks``): the operator's only SQL, in one place."""

from __future__ import annotations

import logging
from typing import Any

from longtask.operator.decide import RunnerRecord
from psycopg2.extras import RealDictCursor
from psycopg2.pool import ThreadedConnectionPool

from longtask.db import set_hold
from longtask.model import Task

log = logging.getLogger("longtask.operator")

READ_RECORD = """
SELECT run_status, rollback_status, total, done, row_errors, rate_per_second, eta_seconds,
       message, rollback_total, rollback_done, rollback_conflicts, rollback_message
  FROM longtask.tasks
 WHERE uid = %(uid)s
"""


class Records:
    """A small pool of read-only connections to the runner's database.

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
                cur.execute(READ_RECORD, {"uid": uid})
                row = cur.fetchone()
        finally:
            self._pool.putconn(conn)
        return RunnerRecord.from_row(row) if row is not None else None

    def hold(self, task: Task, hold: str | None) -> None:
        """Hold the task's run (``"Paused"``/``"Terminated"``) or release it (``None``).

        Done before the Job is suspended or deleted, so no chunk commits after the operator
        acted, even before the pod gets its SIGTERM (see :func:`longtask.db.set_hold`).
        """
        conn: Any = self._pool.getconn()
        try:
            conn.set_session(readonly=False, autocommit=False)
            if not set_hold(conn, uid=task.uid, name=task.name, namespace=task.namespace,
                            type=task.spec.type, organization=task.spec.organization,
                            params=dict(task.spec.params), hold=hold):
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
