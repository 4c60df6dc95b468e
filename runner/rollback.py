"""Rollback: undo what a task wrote, in checkpointed, resumable, idempotent chunks.

A rollback is a list of steps run in order; its cursor is ``{"step": i, "after": key}``.

- :class:`RestoreJournal` replays the undo journal newest first: a row is restored to its
  before-image only while its ``row_version`` is still the one the task left.
- :class:`DeleteInserted` deletes the rows a task inserted (``task_uid``), oldest first, only
  while ``row_version`` is still 1 and, where given, nothing else refers to them.
- :class:`RestoreDeleted` inserts the rows a task deleted back from the journal.
- :class:`DeleteOwned` deletes rows that belong to the task alone (export output).

A row someone else changed or referenced since is left alone, with the rows of the task
that depend on it, and each is recorded in ``longtask.rollback_conflicts`` (table, id,
reason); the count is in the task's record.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from longtask.runner.engine import ChunkResult, Cursor, StopToken


class Step(Protocol):
    """One rollback step over one table."""

    def count(self, cur: Cursor, task_uid: uuid.UUID) -> int:
        """Units this step has to do (for the progress total)."""
        ...

    def chunk(
        self, cur: Cursor, task_uid: uuid.UUID, after: Any, limit: int
    ) -> tuple[int, int, Any, bool]:
        """Do up to ``limit`` units after key ``after``: (units, conflicts, new key, done)."""
        ...


_LAST_SEQ = 2**63 - 1  # above every journal seq (a bigint): "from the newest"


def _record_conflicts(cur: Cursor, task_uid: uuid.UUID, table: str, ids: Sequence[int],
                      reason: str) -> int:
    if not ids:
        return 0
    cur.execute(
        "INSERT INTO longtask.rollback_conflicts (task_uid, table_name, row_id, reason) "
        "SELECT %s, %s, unnest(%s::bigint[]), %s ON CONFLICT DO NOTHING",
        (task_uid, table, list(ids), reason),
    )
    return len(ids)


def _replay_journal(cur: Cursor, task_uid: uuid.UUID, after: Any, limit: int, *, table: str,
                    entries: str, restore: str, left: str,
                    reason: str) -> tuple[int, int, Any, bool]:
    """One chunk of a replay of the undo journal, newest first, in one statement.

    It walks the journal's primary key backwards from the cursor ``after`` (a ``seq``),
    ``limit`` entries of the task, so a chunk costs what it replays, not the size of the
    journal (a list of seqs, ``= ANY``, let the planner scan every entry of the task for
    each chunk while the journal's statistics were those of an empty table). Of those,
    the entries of ``table`` that also match ``entries`` (SQL over ``batch``'s columns,
    or ``""``) form the CTE ``wanted``; ``restore`` (an INSERT or UPDATE over ``wanted``)
    is the CTE ``restored``; ``left`` selects the ``row_id`` of the wanted entries it
    did not restore, recorded as conflicts with ``reason``. Returns a Step's ``(units,
    conflicts, new key, done)``.
    """
    cur.execute(
        "WITH batch AS (SELECT seq, row_id, table_name, after_version, before_image "
        "  FROM longtask.undo_journal WHERE task_uid = %(task)s AND seq < %(after)s "
        "  ORDER BY task_uid DESC, seq DESC LIMIT %(limit)s), "
        f"wanted AS (SELECT * FROM batch WHERE table_name = %(table)s {entries}), "
        f"restored AS ({restore}) "
        "SELECT (SELECT count(*) FROM batch), (SELECT min(seq) FROM batch), "
        f"  (SELECT count(*) FROM wanted), ARRAY({left})",
        {"task": task_uid, "after": _LAST_SEQ if after is None else after,
         "limit": limit, "table": table},
    )
    scanned, lowest, units, unrestored = cur.fetchone()  # type: ignore[misc]
    if not scanned:
        return 0, 0, after, True
    conflicts = _record_conflicts(cur, task_uid, table, unrestored, reason)
    return int(units), conflicts, int(lowest), scanned < limit


@dataclass(frozen=True)
class RestoreJournal:
    """Restore before-images of ``table``'s rows from the undo journal, newest first.

    ``columns`` are the columns a before-image restores (never ``id`` or ``row_version``).
    """

    table: str
    columns: tuple[str, ...]

    def count(self, cur: Cursor, task_uid: uuid.UUID) -> int:
        cur.execute(
            "SELECT count(*) FROM longtask.undo_journal WHERE task_uid = %s AND table_name = %s",
            (task_uid, self.table),
        )
        return int(cur.fetchone()[0])  # type: ignore[index]

    def chunk(
        self, cur: Cursor, task_uid: uuid.UUID, after: Any, limit: int
    ) -> tuple[int, int, Any, bool]:
        sets = ", ".join(f"{c} = r.{c}" for c in self.columns)
        return _replay_journal(
            cur, task_uid, after, limit, table=self.table, entries="",
            restore=(f"UPDATE collect.{self.table} t SET {sets} FROM wanted j, "
                     f"LATERAL jsonb_populate_record(NULL::collect.{self.table}, "
                     "j.before_image) r WHERE t.id = j.row_id "
                     "AND t.row_version = j.after_version RETURNING j.seq"),
            left="SELECT row_id FROM wanted WHERE seq NOT IN (SELECT seq FROM restored) "
                 "ORDER BY seq DESC",
            reason="changed by someone else after the task updated it")


@dataclass(frozen=True)
class DeleteInserted:
    """Delete ``table``'s rows the task inserted, unless changed or referenced since, or
    part of a row that stays.

    ``referenced_by`` lists ``(table, column)`` pairs whose rows keep a row alive: rows
    the task did not write, and the task's own rows that an earlier step kept.
    ``kept_with`` lists ``(column, parent table)`` pairs: a row stays with its parent when
    the parent is the task's too and stays itself, because someone changed it or rows of
    ``table`` the task did not write refer to it (a renamed team keeps the manager and
    members the task gave it, so the rollback never leaves it half made).
    """

    table: str
    referenced_by: tuple[tuple[str, str], ...] = ()
    kept_with: tuple[tuple[str, str], ...] = ()

    def count(self, cur: Cursor, task_uid: uuid.UUID) -> int:
        cur.execute(f"SELECT count(*) FROM collect.{self.table} WHERE task_uid = %s", (task_uid,))
        return int(cur.fetchone()[0])  # type: ignore[index]

    def chunk(
        self, cur: Cursor, task_uid: uuid.UUID, after: Any, limit: int
    ) -> tuple[int, int, Any, bool]:
        after = after or 0
        cur.execute(
            f"SELECT id, row_version FROM collect.{self.table} WHERE task_uid = %s AND id > %s "
            "ORDER BY id LIMIT %s FOR UPDATE",
            (task_uid, after, limit),
        )
        rows = cur.fetchall()
        if not rows:
            return 0, 0, after, True
        ids = [r[0] for r in rows]
        changed = [r[0] for r in rows if r[1] != 1]
        unchanged = [r[0] for r in rows if r[1] == 1]
        with_parent: set[int] = set()
        for column, parent in self.kept_with:
            cur.execute(
                f"SELECT c.id FROM collect.{self.table} c JOIN collect.{parent} p "
                f"ON p.id = c.{column} WHERE c.id = ANY(%s) AND p.task_uid = %s "
                f"AND (p.row_version <> 1 OR EXISTS (SELECT 1 FROM collect.{self.table} o "
                f"WHERE o.{column} = p.id AND o.task_uid IS DISTINCT FROM %s))",
                (unchanged, task_uid, task_uid),
            )
            with_parent.update(r[0] for r in cur.fetchall())
        unchanged = [i for i in unchanged if i not in with_parent]
        referenced: list[int] = []
        for ref_table, ref_column in self.referenced_by:
            cur.execute(
                f"SELECT DISTINCT {ref_column} FROM collect.{ref_table} "
                f"WHERE {ref_column} = ANY(%s)",
                (unchanged,),
            )
            referenced.extend(r[0] for r in cur.fetchall())
        keep = set(referenced)
        doomed = [i for i in unchanged if i not in keep]
        if doomed:
            cur.execute(f"DELETE FROM collect.{self.table} WHERE id = ANY(%s)", (doomed,))
        conflicts = _record_conflicts(cur, task_uid, self.table, changed,
                                      "changed by someone else after the task inserted it")
        conflicts += _record_conflicts(cur, task_uid, self.table, sorted(keep),
                                       "still referenced by rows that stay")
        parents = " or ".join(parent for _column, parent in self.kept_with)
        conflicts += _record_conflicts(
            cur, task_uid, self.table, sorted(with_parent),
            f"kept with its row in {parents}, which stays (changed or referenced by others)")
        return len(rows), conflicts, ids[-1], len(rows) < limit


@dataclass(frozen=True)
class RestoreDeleted:
    """Insert ``table``'s rows the task deleted back from their before-images in the undo
    journal, newest first, each with its own id (``OVERRIDING SYSTEM VALUE``: the ids are
    identity columns). A row whose id exists again is left alone and reported.

    ``columns`` are every column of the row (the before-image holds them all).
    """

    table: str
    columns: tuple[str, ...]

    def count(self, cur: Cursor, task_uid: uuid.UUID) -> int:
        cur.execute(
            "SELECT count(*) FROM longtask.undo_journal WHERE task_uid = %s "
            "AND table_name = %s AND after_version = 0", (task_uid, self.table))
        return int(cur.fetchone()[0])  # type: ignore[index]

    def chunk(
        self, cur: Cursor, task_uid: uuid.UUID, after: Any, limit: int
    ) -> tuple[int, int, Any, bool]:
        columns = ", ".join(self.columns)
        values = ", ".join(f"r.{c}" for c in self.columns)
        return _replay_journal(
            cur, task_uid, after, limit, table=self.table, entries="AND after_version = 0",
            restore=(f"INSERT INTO collect.{self.table} ({columns}) OVERRIDING SYSTEM VALUE "
                     f"SELECT {values} FROM wanted w, "
                     f"LATERAL jsonb_populate_record(NULL::collect.{self.table}, "
                     "w.before_image) r ON CONFLICT (id) DO NOTHING RETURNING id"),
            left="SELECT row_id FROM wanted WHERE row_id NOT IN (SELECT id FROM restored) "
                 "ORDER BY row_id",
            reason="its id was taken again after the task deleted it")


@dataclass(frozen=True)
class DeleteOwned:
    """Delete rows of a ``longtask`` table owned by the task alone, keyed by ``key``."""

    table: str
    key: str

    def count(self, cur: Cursor, task_uid: uuid.UUID) -> int:
        cur.execute(f"SELECT count(*) FROM longtask.{self.table} WHERE task_uid = %s",
                    (task_uid,))
        return int(cur.fetchone()[0])  # type: ignore[index]

    def chunk(
        self, cur: Cursor, task_uid: uuid.UUID, after: Any, limit: int
    ) -> tuple[int, int, Any, bool]:
        cur.execute(
            f"DELETE FROM longtask.{self.table} WHERE task_uid = %s AND {self.key} IN ("
            f"SELECT {self.key} FROM longtask.{self.table} WHERE task_uid = %s "
            f"ORDER BY {self.key} LIMIT %s) RETURNING {self.key}",
            (task_uid, task_uid, limit),
        )
        keys = sorted(r[0] for r in cur.fetchall())
        return len(keys), 0, keys[-1] if keys else after, len(keys) < limit


class Rollback:
    """A task's rollback as :class:`~longtask.runner.engine.Work` over ordered steps."""

    max_row_errors: int | None = None

    def __init__(self, task_uid: uuid.UUID, steps: Sequence[Step], read_conn: Any,
                 stop: StopToken) -> None:
        self.task_uid = task_uid
        self.steps = list(steps)
        self.read_conn = read_conn
        self.stop = stop
        self._step = 0
        self._after: Any = None

    def open(self, cursor: Mapping[str, Any] | None) -> int | None:
        if cursor:
            self._step = int(cursor["step"])
            self._after = cursor.get("after")
        with self.read_conn.cursor() as cur:
            return sum(step.count(cur, self.task_uid) for step in self.steps) if not cursor \
                else None

    def close(self) -> None:
        """Nothing to release."""

    def total(self) -> int | None:
        """Never late: :meth:`open` counts."""
        return None

    def chunk(self, cur: Cursor, limit: int) -> ChunkResult:
        units = conflicts = 0
        while self._step < len(self.steps) and units < limit:
            self.stop.check()
            step = self.steps[self._step]
            done_units, step_conflicts, after, finished = step.chunk(
                cur, self.task_uid, self._after, limit - units
            )
            units += done_units
            conflicts += step_conflicts
            if finished:
                self._step += 1
                self._after = None
            else:
                self._after = after
        return ChunkResult(
            rows=units,
            cursor={"step": self._step, "after": self._after},
            exhausted=self._step >= len(self.steps),
            conflicts=conflicts,
        )
