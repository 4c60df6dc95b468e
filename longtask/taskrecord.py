"""The task record protocol: every statement on ``longtask.tasks``, named, in one place.

A task's record is one row of ``longtask.tasks`` (migration 0001). Three processes write it,
each only through this module:

- **register** (the runner, at its start): the task's identity, a :class:`TaskRecord`;
  made once, never changed (a runner given other parameters fails).
- **lease and epoch** (the runner): :func:`acquire` bumps ``epoch``, the fencing token; each
  chunk locks the row (:func:`lock_for_chunk`), checks the epoch and the hold, and keeps
  the lock to its commit.
- **checkpoint** (the runner, in each chunk's transaction): cursor, counts, rate, ETA, and
  the chunk's line in ``longtask.chunks`` (:func:`checkpoint`); the total (:func:`set_total`).
- **end** (the runner): stopped, failed or succeeded, only while it holds the lease
  (:func:`end`); a failure before any lease (:func:`fail_early`).
- **hold and release** (the API on a control request, the operator before it suspends,
  deletes, resumes or creates the run Job): :func:`hold` sets ``hold`` to ``Paused`` or
  ``Terminated``, waiting for the chunk in flight, so no later chunk of the run commits;
  :func:`release` clears it. A held run takes no lease and commits no chunk.
- **throttle** (the operator, when ``spec.rateLimit`` changes): :func:`set_rate_limit`
  writes ``rate_limit``, which the runner reads under its chunk lock before every chunk.
- **read** (the operator's source of truth for success, failure and progress, the API's row
  error count): :func:`read` gives a :class:`RunnerRecord`. Before a control request the
  API reads it under the row lock (:func:`lock_for_control`), so a run cannot record its
  success between the API's decision and its hold.

Each function runs on a cursor or connection the caller gives and leaves the transaction
to the caller, except :func:`register`, :func:`hold` and :func:`release`, which commit.
``docs/architecture.md`` tells how a pause, a terminate and a resume go through it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from longtask import db as _db  # noqa: F401 - registers the UUID adapter
from longtask.errors import TaskFailed
from longtask.phases import RollbackOutcome, RunOutcome

Mode = Literal["run", "rollback"]
"""A runner's mode, which is also its Job's: the run of a task or its rollback."""

Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor
Hold = Literal["Paused", "Terminated"]

HOLD_LOCK_TIMEOUT = "2s"  # longest wait for a chunk in flight; a chunk takes ~0.25 s


@dataclass(frozen=True)
class TaskRecord:
    """Who a task is: what a runner is told (the Job's environment or the command line) and
    what a hold writes when it makes the record first. Fixed once the record exists."""

    uid: uuid.UUID
    type: str
    organization: str
    params: Mapping[str, Any]
    name: str | None = None
    namespace: str | None = None
    rate_limit: float | None = None  # rows per second, None: unlimited

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TaskRecord:
        """Read a LongTask object (``metadata`` and ``spec``) as the API server returns it."""
        meta, spec = body["metadata"], body.get("spec") or {}
        return cls(uid=uuid.UUID(str(meta["uid"])), type=spec["type"],
                   organization=spec["organization"], params=dict(spec.get("params") or {}),
                   name=meta.get("name"), namespace=meta.get("namespace"),
                   rate_limit=spec.get("rateLimit"))


@dataclass(frozen=True)
class RunnerRecord:
    """What the runner recorded of a task: the operator's source of truth for success,
    failure and progress. Counts are rows; ``eta_seconds`` is seconds."""

    run_status: RunOutcome = RunOutcome.PENDING
    rollback_status: RollbackOutcome = RollbackOutcome.NONE
    total: int | None = None
    done: int = 0
    row_errors: int = 0
    rate_per_second: float | None = None
    eta_seconds: float | None = None
    message: str | None = None
    rate_limit: float | None = None  # rows per second the runner's next chunk keeps to
    rollback_total: int | None = None
    rollback_done: int = 0
    rollback_conflicts: int = 0
    rollback_message: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunnerRecord:
        """Read a ``longtask.tasks`` row given as a column-name mapping."""
        return cls(
            run_status=RunOutcome(row["run_status"]),
            rollback_status=RollbackOutcome(row["rollback_status"]),
            total=row.get("total"),
            done=int(row.get("done") or 0),
            row_errors=int(row.get("row_errors") or 0),
            rate_per_second=row.get("rate_per_second"),
            eta_seconds=row.get("eta_seconds"),
            message=row.get("message"),
            rate_limit=row.get("rate_limit"),
            rollback_total=row.get("rollback_total"),
            rollback_done=int(row.get("rollback_done") or 0),
            rollback_conflicts=int(row.get("rollback_conflicts") or 0),
            rollback_message=row.get("rollback_message"),
        )


@dataclass(frozen=True)
class Columns:
    """The columns one mode keeps its status, cursor and counts in."""

    status: str
    cursor: str
    done: str
    total: str
    message: str
    started_at: str
    finished_at: str


COLUMNS: dict[Mode, Columns] = {
    "run": Columns("run_status", "cursor", "done", "total", "message", "started_at",
                   "finished_at"),
    "rollback": Columns("rollback_status", "rollback_cursor", "rollback_done", "rollback_total",
                        "rollback_message", "rollback_started_at", "rollback_finished_at"),
}


def _acquire(mode: Mode) -> str:
    c = COLUMNS[mode]
    return (
        f"UPDATE longtask.tasks SET epoch = epoch + 1, lease_holder = %s, "
        f"{c.status} = CASE WHEN {c.status} IN ('succeeded', 'failed') "
        f"THEN {c.status} ELSE 'running' END, "
        f"{c.started_at} = coalesce({c.started_at}, clock_timestamp()), "
        "heartbeat_at = clock_timestamp(), stop_reason = NULL, "
        "updated_at = clock_timestamp() WHERE uid = %s "
        # Once a rollback has begun, a late run pod must not fence it out; a held run
        # (paused or terminated) takes no lease at all.
        + ("AND rollback_status = 'none' AND hold IS NULL " if mode == "run" else "")
        + "RETURNING *"
    )


def _checkpoint(mode: Mode, finished: bool, ended: bool) -> str:
    c = COLUMNS[mode]
    return (
        "WITH checkpoint AS ("
        f"UPDATE longtask.tasks SET {c.cursor} = %s, {c.done} = %s, "
        "row_errors = %s, chunks = chunks + 1, rate_per_second = %s, "
        "eta_seconds = %s, heartbeat_at = clock_timestamp(), "
        "updated_at = clock_timestamp()"
        + (", rollback_conflicts = rollback_conflicts + %s" if mode == "rollback" else "")
        # A count still running when the work ends: the total is what was done.
        + (f", {c.total} = coalesce({c.total}, %s)" if finished else "")
        + (f", {c.status} = %s, message = %s, {c.finished_at} = clock_timestamp()"
           if ended else "")
        + " WHERE uid = %s RETURNING uid) "
        "INSERT INTO longtask.chunks (task_uid, mode, seq, epoch, rows, row_errors, "
        "started_at, commit_requested_at) "
        "SELECT uid, %s, coalesce((SELECT max(seq) FROM longtask.chunks "
        "  WHERE task_uid = %s AND mode = %s), 0) + 1, "
        "%s, %s, %s, %s, clock_timestamp() FROM checkpoint RETURNING seq"
    )


def _end(mode: Mode, failed: bool) -> str:
    c = COLUMNS[mode]
    return (
        f"UPDATE longtask.tasks SET {c.status} = %s, stop_reason = %s, "
        "stop_requested_at = to_timestamp(%s), "
        f"{c.message} = coalesce(%s, {c.message}), "
        "heartbeat_at = clock_timestamp(), updated_at = clock_timestamp() "
        + (", finished_at = clock_timestamp()" if failed and mode == "run" else "")
        + f" WHERE uid = %s AND epoch = %s AND {c.status} = 'running'"
    )


class Queries:
    """Every statement on ``longtask.tasks``; per mode where the columns differ."""

    REGISTER = (
        "INSERT INTO longtask.tasks (uid, name, namespace, type, organization, params, "
        "rate_limit) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (uid) DO UPDATE "
        # The control plane may have made the record first (a hold): fill what it lacks.
        # Once a runner took the lease the record's rate limit is the one in force (the
        # operator keeps it equal to spec.rateLimit), not the Job's environment, which
        # keeps the value the Job was made with: a NULL there is a limit removed.
        "SET rate_limit = CASE WHEN longtask.tasks.epoch = 0 "
        "THEN coalesce(longtask.tasks.rate_limit, EXCLUDED.rate_limit) "
        "ELSE longtask.tasks.rate_limit END, "
        "name = coalesce(longtask.tasks.name, EXCLUDED.name), "
        "namespace = coalesce(longtask.tasks.namespace, EXCLUDED.namespace)"
    )
    IDENTITY = "SELECT type, organization, params FROM longtask.tasks WHERE uid = %s"
    ACQUIRE: ClassVar[dict[Mode, str]] = {m: _acquire(m) for m in COLUMNS}
    WHY_NO_LEASE = "SELECT rollback_status, hold FROM longtask.tasks WHERE uid = %s"
    LOCK_FOR_CHUNK: ClassVar[dict[Mode, str]] = {
        m: f"SELECT clock_timestamp(), epoch, rate_limit, row_errors, {c.done}, "
           f"{c.total}, hold FROM longtask.tasks WHERE uid = %s FOR UPDATE"
        for m, c in COLUMNS.items()
    }
    CHECKPOINT: ClassVar[dict[tuple[Mode, bool, bool], str]] = {
        (m, f, e): _checkpoint(m, f, e) for m in COLUMNS for f in (False, True)
        for e in (False, True)
    }
    SET_TOTAL: ClassVar[dict[Mode, str]] = {
        m: f"UPDATE longtask.tasks SET {c.total} = %s WHERE uid = %s AND epoch = %s"
        for m, c in COLUMNS.items()
    }
    TOTAL_RECORDED = "SELECT total IS NOT NULL FROM longtask.tasks WHERE uid = %s"
    END: ClassVar[dict[tuple[Mode, bool], str]] = {(m, f): _end(m, f) for m in COLUMNS
                                         for f in (False, True)}
    FAIL_EARLY: ClassVar[dict[Mode, str]] = {
        m: f"UPDATE longtask.tasks SET {c.status} = 'failed', {c.message} = %s, "
           "updated_at = clock_timestamp() WHERE uid = %s"
        for m, c in COLUMNS.items()
    }
    READ = (
        "SELECT run_status, rollback_status, total, done, row_errors, rate_per_second, "
        "eta_seconds, message, rate_limit, rollback_total, rollback_done, "
        "rollback_conflicts, rollback_message FROM longtask.tasks WHERE uid = %(uid)s"
    )
    ROW_ERRORS = "SELECT row_errors FROM longtask.tasks WHERE uid = %(uid)s"
    # The record, row-locked as a chunk locks it: no chunk (the last one, recording
    # success, included) commits until the locker's transaction ends.
    LOCK_FOR_CONTROL = READ + " FOR UPDATE"
    HOLD = (
        "INSERT INTO longtask.tasks (uid, name, namespace, type, organization, params, hold) "
        "VALUES (%(uid)s, %(name)s, %(namespace)s, %(type)s, %(organization)s, %(params)s, "
        "%(hold)s) "
        "ON CONFLICT (uid) DO UPDATE SET hold = EXCLUDED.hold, updated_at = clock_timestamp()"
    )
    # A throttle needs no record: a runner not yet registered takes the Job's value, and
    # the operator writes the spec's again once the record differs from it.
    SET_RATE_LIMIT = (
        "UPDATE longtask.tasks SET rate_limit = %(rate_limit)s, updated_at = clock_timestamp() "
        "WHERE uid = %(uid)s AND rate_limit IS DISTINCT FROM %(rate_limit)s"
    )
    # A release needs no record: without one, nothing is held.
    RELEASE = (
        "UPDATE longtask.tasks SET hold = NULL, updated_at = clock_timestamp() "
        "WHERE uid = %(uid)s AND hold IS NOT NULL"
    )


# ------------------------------------------------------------------------------ register


def register(conn: Connection, task: TaskRecord) -> None:
    """Create the task's record if it is new; :class:`TaskFailed` if it differs from ``task``.

    A task's type, organization and parameters never change after its first run. Commits.
    """
    with conn.cursor() as cur:
        cur.execute(Queries.REGISTER,
                    (task.uid, task.name, task.namespace, task.type, task.organization,
                     psycopg2.extras.Json(dict(task.params)), task.rate_limit))
        cur.execute(Queries.IDENTITY, (task.uid,))
        row = cur.fetchone()
    conn.commit()
    assert row is not None
    if (row[0], row[1], row[2]) != (task.type, task.organization, dict(task.params)):
        raise TaskFailed(
            f"task {task.uid} was first run as {row[0]} for {row[1]!r} with other parameters; "
            "a task's type, organization and parameters cannot change"
        )


# ------------------------------------------------------------------------- lease and epoch


def acquire(cur: Cursor, uid: uuid.UUID, mode: Mode, holder: str) -> dict[str, Any] | None:
    """Take the lease (bump the epoch): the whole record as it now stands, or None when no
    lease was given (no record, a held run, a run after its rollback began; see
    :func:`why_no_lease`). Waits for a chunk another runner has open on the task. ``cur``
    must be a ``RealDictCursor``."""
    cur.execute(Queries.ACQUIRE[mode], (holder, uid))
    row = cur.fetchone()
    return dict(row) if row is not None else None


def why_no_lease(cur: Cursor, uid: uuid.UUID) -> tuple[str, str | None] | None:
    """``(rollback_status, hold)`` of the task, None when it has no record."""
    cur.execute(Queries.WHY_NO_LEASE, (uid,))
    row: Any = cur.fetchone()
    if row is None:
        return None
    if isinstance(row, Mapping):
        return str(row["rollback_status"]), row["hold"]
    return str(row[0]), row[1]


@dataclass(frozen=True)
class ChunkLock:
    """The record as a chunk found it, row-locked to the chunk's commit."""

    started_at: Any  # the server's clock_timestamp() when the lock was taken
    epoch: int
    rate_limit: float | None
    row_errors: int
    done: int
    total: int | None
    hold: str | None


def lock_for_chunk(cur: Cursor, uid: uuid.UUID, mode: Mode) -> ChunkLock:
    """Lock the record for one chunk (``FOR UPDATE``, held to the transaction's end)."""
    cur.execute(Queries.LOCK_FOR_CHUNK[mode], (uid,))
    row = cur.fetchone()
    assert row is not None, f"task {uid} has no record"
    return ChunkLock(*row)


# ------------------------------------------------------------------------------ checkpoint


def checkpoint(cur: Cursor, uid: uuid.UUID, mode: Mode, *, epoch: int,
               cursor: Mapping[str, Any], done: int, row_errors: int,
               rate: float | None, eta: float | None, rows: int, chunk_errors: int,
               chunk_started_at: Any, conflicts: int = 0, finished: bool = False,
               end_status: str | None = None, message: str | None = None) -> int:
    """Write a chunk's checkpoint and its line in ``longtask.chunks`` in one round trip;
    the chunk's sequence number. ``finished``: the work is exhausted (an unknown total
    becomes ``done``); ``end_status`` (``succeeded``/``failed``) with ``message`` ends the
    mode in the same transaction."""
    cur.execute(
        Queries.CHECKPOINT[(mode, finished, end_status is not None)],
        (
            psycopg2.extras.Json(dict(cursor)), done, row_errors, rate, eta,
            *((conflicts,) if mode == "rollback" else ()),
            *((done,) if finished else ()),
            *((end_status, message) if end_status else ()),
            uid,
            mode, uid, mode, epoch, rows, chunk_errors, chunk_started_at,
        ),
    )
    return int(cur.fetchone()[0])  # type: ignore[index]


def set_total(cur: Cursor, uid: uuid.UUID, mode: Mode, total: int, epoch: int) -> None:
    """Record the mode's total (rows), while ``epoch`` still holds the lease."""
    cur.execute(Queries.SET_TOTAL[mode], (total, uid, epoch))


def total_recorded(cur: Cursor, uid: uuid.UUID) -> bool:
    """Whether the run's total is in the record already."""
    cur.execute(Queries.TOTAL_RECORDED, (uid,))
    row = cur.fetchone()
    return bool(row and row[0])


# ------------------------------------------------------------------------------------ end


def end(cur: Cursor, uid: uuid.UUID, mode: Mode, *, epoch: int, status: str,
        reason: str | None, stop_requested_at: float | None, message: str | None) -> None:
    """Record how the mode ended (``stopped``/``failed``), only while ``epoch`` holds the
    lease and the mode is still ``running``. ``stop_requested_at`` is a Unix time."""
    cur.execute(Queries.END[(mode, status == "failed")],
                (status, reason, stop_requested_at, message, uid, epoch))


def fail_early(cur: Cursor, uid: uuid.UUID, mode: Mode, message: str) -> None:
    """Mark the mode failed before any lease was taken (input that cannot start at all)."""
    cur.execute(Queries.FAIL_EARLY[mode], (message, uid))


# ----------------------------------------------------------------------------------- read


def read(cur: Cursor, uid: uuid.UUID | str) -> RunnerRecord | None:
    """The task's record, or ``None`` while nobody has written one. ``cur`` must be a
    ``RealDictCursor``."""
    cur.execute(Queries.READ, {"uid": uid})
    row: Any = cur.fetchone()
    return RunnerRecord.from_row(row) if row is not None else None


def lock_for_control(conn: Connection, uid: uuid.UUID | str) -> tuple[bool, RunnerRecord | None]:
    """Read the task's record and lock its row for a control request: ``(locked, record)``.

    Opens a transaction on ``conn`` (the caller ends it, normally with :func:`hold`): while
    it is open no chunk commits, so the runner cannot record success between the caller's
    decision and its hold. Waits at most ``HOLD_LOCK_TIMEOUT`` for a chunk in flight; past
    that the record is read without a lock (``locked`` False). ``record`` is ``None``
    while no runner or hold has made one (then there is nothing to race with).
    """
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{HOLD_LOCK_TIMEOUT}'")
            cur.execute(Queries.LOCK_FOR_CONTROL, {"uid": uid})
            row: Any = cur.fetchone()
        return True, RunnerRecord.from_row(row) if row is not None else None
    except psycopg2.errors.LockNotAvailable:
        conn.rollback()
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        return False, read(cur, uid)


def row_errors(cur: Cursor, uid: uuid.UUID | str) -> int:
    """The row errors the runner counted (stored or not); 0 before it has a record."""
    cur.execute(Queries.ROW_ERRORS, {"uid": uid})
    row = cur.fetchone()
    return int(row[0]) if row else 0


# -------------------------------------------------------------------------- hold, release


def hold(conn: Connection, task: TaskRecord, hold: Hold | str | None) -> bool:
    """Hold a task's run (``"Paused"`` or ``"Terminated"``) or release it (``None``).

    While held, a runner takes no lease and commits no chunk. The update waits for the row
    lock a chunk in flight holds, so when it returns True no later chunk of the run can
    commit: the pause or terminate is in force before the Job is even suspended. A runner
    that keeps the lock longer than ``HOLD_LOCK_TIMEOUT`` (frozen, cut off) cannot block
    the caller: it gets False, nothing changed, and the Job's suspension or deletion stops
    the runner as before. A hold creates the task's record if the runner has not yet.
    Commits; raises ``psycopg2.Error`` for other failures.
    """
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{HOLD_LOCK_TIMEOUT}'")
            cur.execute(Queries.HOLD if hold is not None else Queries.RELEASE,
                        {"uid": task.uid, "name": task.name, "namespace": task.namespace,
                         "type": task.type, "organization": task.organization,
                         "params": psycopg2.extras.Json(dict(task.params)), "hold": hold})
    except psycopg2.errors.LockNotAvailable:
        conn.rollback()
        return False
    conn.commit()
    return True


def release(conn: Connection, task: TaskRecord) -> bool:
    """Release a held run (see :func:`hold`); True once in force, False when a chunk kept
    its lock past ``HOLD_LOCK_TIMEOUT``."""
    return hold(conn, task, None)


# ------------------------------------------------------------------------------- throttle


def set_rate_limit(conn: Connection, uid: uuid.UUID | str, rate_limit: float | None) -> bool:
    """Set the run's (and rollback's) rate limit, rows per second (``None``: unlimited).

    The runner reads it under its chunk lock before every chunk (``lock_for_chunk``), so
    the chunk after the one in flight keeps to it. Waits at most ``HOLD_LOCK_TIMEOUT`` for
    that chunk's row lock: False when a chunk kept it longer (nothing changed; the caller
    tries again later), True once written, or when there is no record yet. Commits; raises
    ``psycopg2.Error`` for other failures.
    """
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{HOLD_LOCK_TIMEOUT}'")
            cur.execute(Queries.SET_RATE_LIMIT, {"uid": uid, "rate_limit": rate_limit})
    except psycopg2.errors.LockNotAvailable:
        conn.rollback()
        return False
    conn.commit()
    return True
