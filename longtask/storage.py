"""Storage per organization: the quota on stored bytes, the retention's statements.

Every statement on ``longtask.storage_usage``, the retention columns of ``longtask.files``
and ``longtask.tasks``, and ``longtask.storage_removals`` (migration 0004) is here, named.

**Usage** is kept by triggers (migration 0004) for every writer: a file counts once it is
complete and until it is removed, an export part from its insert to its delete.

**The quota** (:func:`check`) is checked by the writer in its own transaction, right before
the write that adds the bytes: it locks the organization's usage row (``SELECT ... FOR
UPDATE``, the row made first when missing), so a second upload or export chunk of the same
organization waits for the first to commit and then sees its bytes. Another organization's
row is never locked. The lock is taken at the end of an upload, not at its start: a slow
client does not hold the other uploads of its organization.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions

from longtask.errors import TaskFailed

Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor

DEFAULT_QUOTA_BYTES = 10 << 30
"""An organization's quota unless set otherwise: 10 GiB, ten uploads of the API's largest."""
DEFAULT_RETENTION_SECONDS = 7 * 86_400
"""A file or export output is removed this long after the last task that uses it ended."""
DEFAULT_UNUSED_FILE_RETENTION_SECONDS = 86_400
"""A file no task has used is removed this long after its upload."""
CLAIM_GRACE_SECONDS = 120.0
"""A file a create claimed this recently gets no expiry from a retention pass: the task
being created may not be in the pass's listing yet (a create's calls are bounded well
under this)."""


class QuotaExceeded(TaskFailed):
    """Storing ``adding`` more bytes would take the organization past its quota.

    ``used`` and ``quota`` are bytes at the moment of the check; ``partial``: ``adding``
    is what arrived of a file when it was refused: the file is at least that large.
    """

    def __init__(self, organization: str, used: int, quota: int, adding: int,
                 what: str = "the file", *, partial: bool = False) -> None:
        size = f"at least {adding} bytes" if partial else f"{adding} bytes"
        super().__init__(
            f"organization {organization!r} stores {used} bytes of its quota of {quota}; "
            f"{what} ({size}) would take it past the quota: remove files or "
            "export outputs it no longer needs, or ask for a larger quota")
        self.partial = partial
        self.organization = organization
        self.used = used
        self.quota = quota
        self.adding = adding


class Queries:
    """Every statement of the storage protocol."""

    ENSURE_USAGE = (
        "INSERT INTO longtask.storage_usage (organization) VALUES (%(org)s) "
        "ON CONFLICT (organization) DO NOTHING"
    )
    LOCK_USAGE = (
        "SELECT used_bytes, quota_bytes FROM longtask.storage_usage "
        "WHERE organization = %(org)s FOR UPDATE"
    )
    READ_USAGE = (
        "SELECT used_bytes, quota_bytes FROM longtask.storage_usage WHERE organization = %(org)s"
    )
    SET_QUOTA = (
        "INSERT INTO longtask.storage_usage (organization, quota_bytes) "
        "VALUES (%(org)s, %(quota)s) "
        "ON CONFLICT (organization) DO UPDATE SET quota_bytes = EXCLUDED.quota_bytes"
    )
    CLAIM_FILE = (
        "UPDATE longtask.files SET expires_at = NULL, last_claimed_at = now(), "
        "first_used_at = COALESCE(first_used_at, now()) "
        "WHERE id = %(id)s AND organization = %(org)s AND complete AND removed_at IS NULL "
        "RETURNING id"
    )
    FILE_STATE = (
        "SELECT organization, size_bytes, expires_at, removed_at FROM longtask.files "
        "WHERE id = %(id)s"
    )
    OUTPUT_STATE = (
        "SELECT organization, output_bytes, output_expires_at, output_removed_at "
        "FROM longtask.tasks WHERE uid = %(uid)s"
    )
    LIVE_FILES = (
        "SELECT id, organization, created_at, first_used_at, last_claimed_at, expires_at "
        "FROM longtask.files WHERE complete AND removed_at IS NULL"
    )
    LIVE_OUTPUTS = (
        "SELECT uid, organization, namespace, output_expires_at FROM longtask.tasks "
        "WHERE type = 'Export' AND output_bytes > 0 AND output_removed_at IS NULL"
    )
    # An expiry is written only for a file not claimed by a create since ``listed_before``:
    # a task created after the listing began may not be in it.
    SET_FILE_EXPIRY = (
        "UPDATE longtask.files SET expires_at = %(at)s WHERE id = %(id)s "
        "AND removed_at IS NULL AND expires_at IS DISTINCT FROM %(at)s "
        "AND (%(at)s::timestamptz IS NULL OR last_claimed_at IS NULL "
        "     OR last_claimed_at < %(listed_before)s)"
    )
    MARK_FILE_USED = (
        "UPDATE longtask.files SET first_used_at = now() WHERE id = %(id)s "
        "AND first_used_at IS NULL"
    )
    SET_OUTPUT_EXPIRY = (
        "UPDATE longtask.tasks SET output_expires_at = %(at)s WHERE uid = %(uid)s "
        "AND output_removed_at IS NULL AND output_expires_at IS DISTINCT FROM %(at)s"
    )
    # Removal re-checks the expiry under the row's lock: a create that claimed the file
    # since (expires_at NULL) keeps it.
    REMOVE_FILE = (
        "UPDATE longtask.files SET removed_at = now() WHERE id = %(id)s "
        "AND removed_at IS NULL AND expires_at <= now() RETURNING organization, size_bytes"
    )
    DELETE_FILE_BLOCKS = "DELETE FROM longtask.file_blocks WHERE file_id = %(id)s"
    REMOVE_OUTPUT = (
        "UPDATE longtask.tasks SET output_removed_at = now() WHERE uid = %(uid)s "
        "AND output_removed_at IS NULL AND output_expires_at <= now() "
        "RETURNING organization, output_bytes"
    )
    DELETE_OUTPUT_PARTS = "DELETE FROM longtask.export_parts WHERE task_uid = %(uid)s"
    AUDIT = (
        "INSERT INTO longtask.storage_removals (kind, object_id, organization, bytes, reason) "
        "VALUES (%(kind)s, %(id)s, %(org)s, %(bytes)s, %(reason)s) RETURNING removed_at"
    )
    REMOVAL = (
        "SELECT kind, organization, bytes, removed_at, reason FROM longtask.storage_removals "
        "WHERE object_id = %(id)s ORDER BY id DESC LIMIT 1"
    )
    NOW = "SELECT now()"


@dataclass(frozen=True)
class Usage:
    """An organization's stored bytes and its quota in force (bytes)."""

    organization: str
    used: int
    quota: int

    @property
    def room(self) -> int:
        """Bytes it may still store (0 at or past its quota)."""
        return max(self.quota - self.used, 0)


def usage(conn: Connection, organization: str, default_quota: int) -> Usage:
    """The organization's usage now, without a lock (for a refusal before storing)."""
    with conn.cursor() as cur:
        cur.execute(Queries.READ_USAGE, {"org": organization})
        row = cur.fetchone()
    used, own = (int(row[0]), row[1]) if row is not None else (0, None)
    return Usage(organization, used, default_quota if own is None else int(own))


def check(cur: Cursor, organization: str, adding: int, default_quota: int,
          what: str = "the file") -> Usage:
    """Lock the organization's usage row and raise :class:`QuotaExceeded` when ``adding``
    bytes would take it past its quota (its own ``quota_bytes``, else ``default_quota``).

    Call it in the writer's transaction right before the write; the lock is held to its
    commit or rollback. Returns the usage before the write.
    """
    cur.execute(Queries.ENSURE_USAGE, {"org": organization})
    cur.execute(Queries.LOCK_USAGE, {"org": organization})
    row = cur.fetchone()
    assert row is not None  # made just above, and usage rows are never deleted
    used, own = int(row[0]), row[1]
    current = Usage(organization, used, default_quota if own is None else int(own))
    if used + adding > current.quota:
        raise QuotaExceeded(organization, used, current.quota, adding, what)
    return current


def set_quota(conn: Connection, organization: str, quota: int | None) -> None:
    """Give the organization a quota of its own (bytes), or back the default (None);
    committed."""
    with conn.cursor() as cur:
        cur.execute(Queries.SET_QUOTA, {"org": organization, "quota": quota})
    conn.commit()


def claim_file(conn: Connection, file_id: uuid.UUID, organization: str) -> bool:
    """Mark the file as used by a task being created (no expiry while tasks use it);
    committed. False when it is absent, another organization's or removed."""
    with conn.cursor() as cur:
        cur.execute(Queries.CLAIM_FILE, {"id": file_id, "org": organization})
        claimed = cur.fetchone() is not None
    conn.commit()
    return claimed


@dataclass(frozen=True)
class Retention:
    """When a stored object goes: ``expires_at`` (None while in use), ``removed`` with the
    audit's time and reason once it is gone."""

    organization: str
    bytes: int
    expires_at: dt.datetime | None
    removed_at: dt.datetime | None
    reason: str | None = None


def file_retention(conn: Connection, file_id: uuid.UUID) -> Retention | None:
    """The file's retention facts, None when no such file was ever stored."""
    return _retention(conn, Queries.FILE_STATE, {"id": file_id}, file_id)


def output_retention(conn: Connection, task_uid: uuid.UUID) -> Retention | None:
    """The export output's retention facts, None before the task has a record."""
    return _retention(conn, Queries.OUTPUT_STATE, {"uid": task_uid}, task_uid)


def _retention(conn: Connection, query: str, args: dict[str, Any],
               object_id: uuid.UUID) -> Retention | None:
    with conn.cursor() as cur:
        cur.execute(query, args)
        row = cur.fetchone()
        if row is None:
            return None
        org, size, expires, removed = row
        reason = None
        if removed is not None:
            cur.execute(Queries.REMOVAL, {"id": object_id})
            audit = cur.fetchone()
            reason = audit[4] if audit is not None else None
    return Retention(str(org), int(size), expires, removed, reason)


@dataclass(frozen=True)
class LiveFile:
    """A complete file not removed yet, as the retention sees it."""

    id: uuid.UUID
    organization: str
    created_at: dt.datetime
    first_used_at: dt.datetime | None
    last_claimed_at: dt.datetime | None
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class LiveOutput:
    """An export's stored output not removed yet."""

    uid: uuid.UUID
    organization: str
    namespace: str | None
    expires_at: dt.datetime | None


def now(conn: Connection) -> dt.datetime:
    """The database's clock (every expiry is compared with it)."""
    with conn.cursor() as cur:
        cur.execute(Queries.NOW)
        value: dt.datetime = cur.fetchone()[0]  # type: ignore[index]
    return value


def live_files(conn: Connection) -> list[LiveFile]:
    """Every stored file not removed."""
    with conn.cursor() as cur:
        cur.execute(Queries.LIVE_FILES)
        return [LiveFile(*row) for row in cur.fetchall()]


def live_outputs(conn: Connection) -> list[LiveOutput]:
    """Every export output with bytes stored."""
    with conn.cursor() as cur:
        cur.execute(Queries.LIVE_OUTPUTS)
        return [LiveOutput(*row) for row in cur.fetchall()]


def set_file_expiry(conn: Connection, file_id: uuid.UUID, at: dt.datetime | None, *,
                    used: bool, listed_before: dt.datetime) -> bool:
    """Write the file's expiry (None: in use); committed. True when it changed."""
    with conn.cursor() as cur:
        if used:
            cur.execute(Queries.MARK_FILE_USED, {"id": file_id})
        cur.execute(Queries.SET_FILE_EXPIRY,
                    {"id": file_id, "at": at, "listed_before": listed_before})
        changed = cur.rowcount > 0
    conn.commit()
    return changed


def set_output_expiry(conn: Connection, task_uid: uuid.UUID, at: dt.datetime | None) -> bool:
    """Write the export output's expiry (None: in use); committed. True when it changed."""
    with conn.cursor() as cur:
        cur.execute(Queries.SET_OUTPUT_EXPIRY, {"uid": task_uid, "at": at})
        changed = cur.rowcount > 0
    conn.commit()
    return changed


@dataclass(frozen=True)
class Removal:
    """One removal as audited: what, whose, how many bytes, when and why."""

    kind: str
    object_id: uuid.UUID
    organization: str
    bytes: int
    removed_at: dt.datetime
    reason: str


def remove_file(conn: Connection, file_id: uuid.UUID, reason: str) -> Removal | None:
    """Remove an expired file's blocks and audit it, in one transaction (committed); None
    when it is not expired any more (claimed since) or already gone."""
    with conn.cursor() as cur:
        cur.execute(Queries.REMOVE_FILE, {"id": file_id})
        row = cur.fetchone()
        if row is None:
            conn.rollback()
            return None
        org, size = str(row[0]), int(row[1])
        cur.execute(Queries.DELETE_FILE_BLOCKS, {"id": file_id})
        return _audit(conn, cur, "file", file_id, org, size, reason)


def remove_output(conn: Connection, task_uid: uuid.UUID, reason: str) -> Removal | None:
    """Remove an expired export output's parts and audit it, in one transaction
    (committed); None when it is not expired or already gone. The task record's row is
    locked before the parts, in the order an export's chunk locks them."""
    with conn.cursor() as cur:
        cur.execute(Queries.REMOVE_OUTPUT, {"uid": task_uid})
        row = cur.fetchone()
        if row is None:
            conn.rollback()
            return None
        org, size = str(row[0]), int(row[1])
        cur.execute(Queries.DELETE_OUTPUT_PARTS, {"uid": task_uid})
        return _audit(conn, cur, "export-output", task_uid, org, size, reason)


def _audit(conn: Connection, cur: Cursor, kind: str, object_id: uuid.UUID, org: str,
           size: int, reason: str) -> Removal:
    cur.execute(Queries.AUDIT, {"kind": kind, "id": object_id, "org": org, "bytes": size,
                                "reason": reason})
    removed_at = cur.fetchone()[0]  # type: ignore[index]
    conn.commit()
    return Removal(kind, object_id, org, size, removed_at, reason)
