"""The database: schema migrations (alembic) and connections (psycopg2).

Two schemas: ``collect`` holds the slice of Atlan Collect the tasks work on; ``longtask``
holds the engine's own tables (task records, checkpoints, row errors, undo journal, file
store, export output).
"""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

psycopg2.extras.register_uuid()  # type: ignore[no-untyped-call]


def connect(url: str, *, application_name: str = "longtask",
            statement_timeout: float | None = None) -> psycopg2.extensions.connection:
    """Open a connection in explicit-transaction mode (psycopg2's default), UTC session zone,
    UTF-8 client encoding (the runner hands ``COPY`` UTF-8 bytes); with
    ``statement_timeout`` (seconds) the server cancels any statement that runs longer.

    Raises ``psycopg2.OperationalError`` when the server cannot be reached.
    """
    conn = psycopg2.connect(url, application_name=application_name, client_encoding="UTF8")
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        if statement_timeout is not None:
            cur.execute("SELECT set_config('statement_timeout', %s, false)",
                        (f"{max(1, round(statement_timeout * 1000))}ms",))
    conn.commit()
    return conn


SET_HOLD = """
INSERT INTO longtask.tasks (uid, name, namespace, type, organization, params, hold)
VALUES (%(uid)s, %(name)s, %(namespace)s, %(type)s, %(organization)s, %(params)s, %(hold)s)
ON CONFLICT (uid) DO UPDATE SET hold = EXCLUDED.hold, updated_at = clock_timestamp()
"""


RELEASE_HOLD = """
UPDATE longtask.tasks SET hold = NULL, updated_at = clock_timestamp()
 WHERE uid = %(uid)s AND hold IS NOT NULL
"""

HOLD_LOCK_TIMEOUT = "2s"  # longest wait for a chunk in flight; a chunk takes ~0.25 s


def set_hold(conn: psycopg2.extensions.connection, *, uid: str, name: str, namespace: str,
             type: str, organization: str, params: dict[str, object],
             hold: str | None) -> bool:
    """Hold a task's run (``"Paused"`` or ``"Terminated"``) or release it (``None``).

    While held, a runner takes no lease and commits no chunk. The update waits for the row
    lock a chunk in flight holds, so when it returns True no later chunk of the run can
    commit: the pause or terminate is in force before the Job is even suspended. A runner
    that keeps the lock longer than ``HOLD_LOCK_TIMEOUT`` (frozen, cut off) cannot block
    the caller: it gets False, nothing changed, and the Job's suspension or deletion stops
    the runner as before. Creates the task's record if the runner has not yet. Commits;
    raises ``psycopg2.Error`` for other failures.
    """
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{HOLD_LOCK_TIMEOUT}'")
            # A release needs no record: without one, nothing is held.
            cur.execute(SET_HOLD if hold is not None else RELEASE_HOLD,
                        {"uid": uid, "name": name, "namespace": namespace,
                         "type": type, "organization": organization,
                         "params": psycopg2.extras.Json(params), "hold": hold})
    except psycopg2.errors.LockNotAvailable:
        conn.rollback()
        return False
    conn.commit()
    return True
