"""The database: schema migrations (alembic) and connections (psycopg2).

Two schemas: ``collect`` holds the slice of Atlan Collect the tasks work on; ``longtask``
holds the engine's own tables (task records, checkpoints, row errors, undo journal, file
store, export output).
"""

from __future__ import annotations

import psycopg2
import psycopg2.extensions
import psycopg2.extras

psycopg2.extras.register_uuid()  # type: ignore[no-untyped-call]


def connect(url: str, *, application_name: str = "longtask") -> psycopg2.extensions.connection:
    """Open a connection in explicit-transaction mode (psycopg2's default), UTC session zone.

    Raises ``psycopg2.OperationalError`` when the server cannot be reached.
    """
    conn = psycopg2.connect(url, application_name=application_name)
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn
