"""The API's database access: its connection pool and its own SQL, named in one place.

The API reads the runner's records (row errors, export parts) and the Collect reference
tables. It writes the file store (through :func:`longtask.filestore.store`) and, on a
control request, the task record's hold (through :func:`longtask.taskrecord.hold`, from
``task_control``); the task record's statements are :mod:`longtask.taskrecord`'s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions
from longtask.api.errors import ApiError

from longtask import db as _db  # also registers the UUID adapter
from longtask import taskrecord

Connection = psycopg2.extensions.connection


class DatabaseUnavailable(ApiError, _db.DatabaseUnavailable, RuntimeError):
    """The database cannot be reached, or no pooled connection freed up in time (503)."""


class Queries:
    """Every statement the API runs on its own (the task record's are in
    :mod:`longtask.taskrecord`)."""

    ORGANIZATION_EXISTS = "SELECT 1 FROM collect.organizations WHERE slug = %(org)s"
    FORM_EXISTS = (
        "SELECT 1 FROM collect.forms f JOIN collect.organizations o ON o.id = f.organization_id "
        "WHERE o.slug = %(org)s AND f.name = %(form)s"
    )
    ROW_ERRORS_PAGE = (
        "SELECT id, line, column_name, reason, value FROM longtask.row_errors "
        "WHERE task_uid = %(uid)s AND (line, id) > (%(line)s, %(id)s) "
        "ORDER BY line, id LIMIT %(limit)s"
    )
    ROW_ERRORS_STORED = "SELECT count(*) FROM longtask.row_errors WHERE task_uid = %(uid)s"
    CONFLICTS_PAGE = (
        "SELECT table_name, row_id, reason FROM longtask.rollback_conflicts "
        "WHERE task_uid = %(uid)s AND (table_name, row_id) > (%(table)s, %(id)s) "
        "ORDER BY table_name, row_id LIMIT %(limit)s"
    )
    CONFLICTS_COUNT = "SELECT count(*) FROM longtask.rollback_conflicts WHERE task_uid = %(uid)s"
    EXPORT_PARTS = (
        "SELECT part, rows, octet_length(data), sha256 FROM longtask.export_parts "
        "WHERE task_uid = %(uid)s ORDER BY part"
    )
    EXPORT_PART_DATA = (
        "SELECT data FROM longtask.export_parts WHERE task_uid = %(uid)s AND part = %(part)s"
    )


class Database(_db.Pool):
    """The API's pool (:class:`longtask.db.Pool`): at most ``size`` connections, named
    ``longtask-api``; :class:`DatabaseUnavailable` when none can be had in time."""

    unavailable = DatabaseUnavailable

    def __init__(self, url: str, size: int, *, connect_timeout: int = 5,
                 wait_seconds: float = 10.0) -> None:
        super().__init__(url, size, application_name="longtask-api",
                         connect_timeout=connect_timeout, wait_seconds=wait_seconds)


@dataclass(frozen=True)
class RowErrorRow:
    """One stored row error of a task."""

    id: int
    line: int
    column: str | None
    reason: str
    value: str | None


def organization_exists(conn: Connection, org: str) -> bool:
    """Whether ``collect.organizations`` has the slug."""
    with conn.cursor() as cur:
        cur.execute(Queries.ORGANIZATION_EXISTS, {"org": org})
        return cur.fetchone() is not None


def form_exists(conn: Connection, org: str, form: str) -> bool:
    """Whether the organization has a form of that name."""
    with conn.cursor() as cur:
        cur.execute(Queries.FORM_EXISTS, {"org": org, "form": form})
        return cur.fetchone() is not None


def row_error_counts(conn: Connection, uid: uuid.UUID) -> tuple[int, int]:
    """``(counted, stored)`` row errors of the task; ``(0, 0)`` before it has a record."""
    with conn.cursor() as cur:
        counted = taskrecord.row_errors(cur, uid)
        cur.execute(Queries.ROW_ERRORS_STORED, {"uid": uid})
        stored = int(cur.fetchone()[0])  # type: ignore[index]
    return max(counted, stored), stored


def row_errors_page(conn: Connection, uid: uuid.UUID, after: tuple[int, int],
                    limit: int) -> list[RowErrorRow]:
    """Up to ``limit`` row errors after ``(line, id)``, by line then id."""
    with conn.cursor() as cur:
        cur.execute(Queries.ROW_ERRORS_PAGE,
                    {"uid": uid, "line": after[0], "id": after[1], "limit": limit})
        return [RowErrorRow(int(i), int(line), c, r, v) for i, line, c, r, v in cur.fetchall()]


@dataclass(frozen=True)
class ConflictRow:
    """A row the rollback left: its table (in schema ``collect``), id, and why."""

    table: str
    row_id: int
    reason: str


def conflicts_page(conn: Connection, uid: uuid.UUID, after: tuple[str, int],
                   limit: int) -> tuple[int, list[ConflictRow]]:
    """(how many rows the task's rollback left, up to ``limit`` of them after ``(table,
    id)``, by table then id)."""
    with conn.cursor() as cur:
        cur.execute(Queries.CONFLICTS_COUNT, {"uid": uid})
        total = int(cur.fetchone()[0])  # type: ignore[index]
        cur.execute(Queries.CONFLICTS_PAGE,
                    {"uid": uid, "table": after[0], "id": after[1], "limit": limit})
        return total, [ConflictRow(t, int(i), r) for t, i, r in cur.fetchall()]


@dataclass(frozen=True)
class PartRow:
    """One export part: its number, rows, size in bytes and the runner's SHA-256 of it."""

    part: int
    rows: int
    size: int
    sha256: str


def export_parts(conn: Connection, uid: uuid.UUID) -> list[PartRow]:
    """The export's parts in order (metadata only)."""
    with conn.cursor() as cur:
        cur.execute(Queries.EXPORT_PARTS, {"uid": uid})
        return [PartRow(int(p), int(r), int(n), str(s)) for p, r, n, s in cur.fetchall()]


def export_part_data(conn: Connection, uid: uuid.UUID, part: int) -> bytes:
    """The bytes of one part (one part in memory at a time)."""
    with conn.cursor() as cur:
        cur.execute(Queries.EXPORT_PART_DATA, {"uid": uid, "part": part})
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"export part {part} disappeared")
    data = row[0]
    # The parts are UTF-8 text (bytea in the first schema): the bytes sent are the same.
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)
