"""Helpers for the runner's tests: seed reference data, store files, run the real runner."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg2.extensions
import psycopg2.extras
from longtask.runner.cli import execute
from longtask.runner.engine import StopToken, TaskDefinition

from longtask import filestore
from longtask.db import connect
from longtask.settings import RunnerSettings

Connection = psycopg2.extensions.connection

# Tables a task may write, with the columns compared by checksums (ids excluded: identity
# values are never reused, so an undone insert cannot come back with the same id).
DATA_TABLES = {
    "baseline_records": "organization_id, form_id, external_id, data, task_uid",
    "field_users": "organization_id, phone_e164, name, task_uid",
    "teams": "organization_id, name, task_uid",
    "team_memberships": "team_id, user_id, role, task_uid",
    # Every column, the id too: a restored submission must be the row it was.
    "submissions": "id, organization_id, form_id, submitted_at, submitted_by, data",
}


def create_org(db: Connection, slug: str = "acme") -> int:
    """Insert organization ``slug`` and return its id."""
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO collect.organizations (slug, name) VALUES (%s, %s) RETURNING id",
            (slug, slug.title()),
        )
        return int(cur.fetchone()[0])  # type: ignore[index]


def create_form(
    db: Connection, org_id: int, name: str, fields: Sequence[tuple[str, str, bool]] |
    Sequence[tuple[str, str, bool, Mapping[str, Any] | None]],
) -> int:
    """Insert a form with ``(name, type, required[, options])`` fields; returns its id."""
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO collect.forms (organization_id, name) VALUES (%s, %s) RETURNING id",
            (org_id, name),
        )
        form_id = int(cur.fetchone()[0])  # type: ignore[index]
        for position, spec in enumerate(fields):
            fname, ftype, required = spec[0], spec[1], spec[2]
            options = spec[3] if len(spec) > 3 else None  # type: ignore[misc]
            cur.execute(
                "INSERT INTO collect.form_fields (form_id, position, name, type, required, "
                "options) VALUES (%s, %s, %s, %s, %s, %s)",
                (form_id, position, fname, ftype, required,
                 None if options is None else psycopg2.extras.Json(options)),
            )
    return form_id


def store_bytes(db_url: str, data: bytes, *, organization: str = "acme",
                filename: str = "upload.csv", block_size: int = filestore.BLOCK_SIZE) -> uuid.UUID:
    """Put ``data`` in the file store; returns the file id."""
    conn = connect(db_url)
    try:
        info = filestore.store(conn, io.BytesIO(data), organization=organization,
                               filename=filename, block_size=block_size)
    finally:
        conn.close()
    return info.id


def task(type_: str, params: Mapping[str, Any], *, organization: str = "acme",
         uid: uuid.UUID | None = None, rate_limit: float | None = None) -> TaskDefinition:
    """A task definition as the operator's Job would pass it."""
    return TaskDefinition(uid=uid or uuid.uuid4(), type=type_, organization=organization,
                          params=json.loads(json.dumps(dict(params), default=str)),
                          name="t", namespace="default", rate_limit=rate_limit)


def run_inline(db_url: str, definition: TaskDefinition, mode: str = "run",
               settings: RunnerSettings | None = None) -> int:
    """Run the runner's code in this process (no signals); returns its exit code."""
    return execute(definition, mode, db_url, StopToken(), settings)  # type: ignore[arg-type]


def runner_command(definition: TaskDefinition, mode: str = "run") -> list[str]:
    """The command line the operator's Job runs."""
    return [sys.executable, "-m", "longtask.runner", mode, "--task", str(definition.uid),
            "--type", definition.type, "--organization", definition.organization,
            "--params", json.dumps(dict(definition.params))]


def spawn(db_url: str, definition: TaskDefinition, mode: str = "run",
          env: Mapping[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the real runner program as a child process."""
    full_env = {**os.environ, "LONGTASK_DATABASE_URL": db_url, **(env or {})}
    if definition.rate_limit:
        full_env["LONGTASK_RATE_LIMIT"] = str(definition.rate_limit)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(runner_command(definition, mode), env=full_env, stdout=out,
                            stderr=out if log else subprocess.PIPE)


def wait_for_progress(db: Connection, uid: uuid.UUID, proc: subprocess.Popen[bytes],
                      log: Path | None = None, timeout: float = 60.0) -> None:
    """Wait until the runner in ``proc`` has committed a chunk of task ``uid`` (its record's
    ``done`` above 0); fails if it exits first or ``timeout`` seconds pass, with the end
    of ``log``."""
    deadline = time.monotonic() + timeout
    while not record_or_none(db, uid, "done"):
        assert time.monotonic() < deadline and proc.poll() is None, (
            "no progress" + (f":\n{log.read_text()[-2000:]}" if log and log.exists() else ""))
        time.sleep(0.05)


def record(db: Connection, uid: uuid.UUID) -> dict[str, Any]:
    """The task's row in ``longtask.tasks``."""
    with db.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT * FROM longtask.tasks WHERE uid = %s", (uid,))
        row = cur.fetchone()
    assert row is not None, f"task {uid} has no record"
    return dict(row)


def checksum(db: Connection, table: str) -> tuple[int, str]:
    """(row count, md5 of the rows in a stable order) of a ``collect`` table."""
    cols = DATA_TABLES[table]
    with db.cursor() as cur:
        cur.execute(
            f"SELECT count(*), coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '') "
            f"FROM (SELECT {cols} FROM collect.{table}) r"
        )
        count, digest = cur.fetchone()  # type: ignore[misc]
    return int(count), str(digest)


def snapshot(db: Connection) -> dict[str, tuple[int, str]]:
    """Checksums of every table a task may write."""
    return {table: checksum(db, table) for table in DATA_TABLES}


def row_errors(db: Connection, uid: uuid.UUID) -> list[tuple[int, str | None, str]]:
    """The task's stored row errors as (line, column, reason), by line."""
    with db.cursor() as cur:
        cur.execute(
            "SELECT line, column_name, reason FROM longtask.row_errors WHERE task_uid = %s "
            "ORDER BY line, id", (uid,))
        return [(int(a), b, c) for a, b, c in cur.fetchall()]


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def org_id(db: Connection, slug: str) -> int:
    """The id of organization ``slug``."""
    with db.cursor() as cur:
        cur.execute("SELECT id FROM collect.organizations WHERE slug = %s", (slug,))
        return int(cur.fetchone()[0])  # type: ignore[index]


def record_or_none(db: Connection, uid: uuid.UUID, column: str) -> Any:
    """One column of the task's record, or None while the task has no record."""
    with db.cursor() as cur:
        cur.execute(f"SELECT {column} FROM longtask.tasks WHERE uid = %s", (uid,))
        row = cur.fetchone()
    return None if row is None else row[0]


def count_rows(db: Connection, table: str) -> int:
    """Rows in ``collect.<table>``."""
    with db.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM collect.{table}")
        return int(cur.fetchone()[0])  # type: ignore[index]


def count_parts(db: Connection, uid: uuid.UUID) -> int:
    """Export output parts the task has."""
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM longtask.export_parts WHERE task_uid = %s", (uid,))
        return int(cur.fetchone()[0])  # type: ignore[index]
