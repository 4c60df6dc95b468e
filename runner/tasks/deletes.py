"""BulkSubmissionDelete: delete a form's submissions in a date range, every one restorable.

Rules (also in the README):

- A submission is deleted when its ``submitted_at`` falls in ``[from, to]`` (read in
  ``timeZone``, as for an Export) and, for every ``where`` entry, its answer to that field
  is exactly that text. The match is decided when each chunk runs: a submission that
  arrives in the range while the task runs and sorts after the cursor is deleted too.
- Each chunk deletes the next submissions in ``(submitted_at, id)`` order after the
  cursor and writes each one's whole row, as it was, to the undo journal, in the same
  transaction (one statement): a deleted row without its before-image cannot exist.
- ``maxRows`` refuses the start (nothing deleted) when more submissions match.
- The rollback (:class:`~longtask.runner.rollback.RestoreDeleted`) inserts each row back
  with its own id, newest first; a row whose id exists again is left alone and reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from longtask.runner.engine import ChunkResult, Cursor
from longtask.runner.errors import TaskFailed
from longtask.runner.tasks import common
from psycopg2 import sql
from psycopg2.extras import Json

from longtask.tasktypes import BulkSubmissionDeleteParams

JOURNAL_TABLE = "submissions"


class BulkSubmissionDelete(common.TaskWork[BulkSubmissionDeleteParams, None]):
    """The run of a BulkSubmissionDelete task (a :class:`~longtask.runner.engine.Work`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start, self.end = self.params.bounds()
        self._after: tuple[str, int] | None = None

    def open(self, cursor: Mapping[str, Any] | None) -> int | None:
        """Check the form and the ``where`` fields; on a first start count what matches
        (the total) and refuse past ``maxRows``. Raises :class:`TaskFailed`."""
        conn = self.read_conn
        org_id = common.organization_id(conn, self.task.organization)
        form = common.load_form(conn, org_id, self.params.form)
        self.form_id = form.id
        names = [f.name for f in form.fields]
        unknown = [name for name in self.params.where if name not in names]
        if unknown:
            raise TaskFailed(f"where names fields not in form {form.name!r}: "
                             f"{', '.join(map(repr, unknown))} (its fields: "
                             f"{', '.join(map(repr, names))})")
        if cursor:
            after = cursor.get("after")
            self._after = (after[0], int(after[1])) if after else None
            return None
        # The same count the API's dry run gives (migration 0008's function: the API may
        # count, never read, the answers the filter looks at).
        with conn.cursor() as cur:
            cur.execute("SELECT longtask.count_matching_submissions(%s, %s, %s, %s)",
                        (self.form_id, self.start, self.end, Json(self.params.where)))
            total = int(cur.fetchone()[0])  # type: ignore[index]
        limit = self.params.max_rows
        if limit is not None and total > limit:
            raise TaskFailed(f"{total:,} submissions match, more than maxRows ({limit:,}): "
                             "nothing was deleted; narrow the filter or raise maxRows")
        return total

    def _match(self, after: tuple[str, int] | None) -> tuple[sql.Composable, list[Any]]:
        """The WHERE clause of the submissions to delete after ``after``, with its
        arguments (the ``submissions_form_time`` index serves its range)."""
        parts: list[sql.Composable] = [sql.SQL(
            "form_id = %s AND submitted_at >= %s AND submitted_at < %s")]
        args: list[Any] = [self.form_id, self.start, self.end]
        for name, value in sorted(self.params.where.items()):
            parts.append(sql.SQL("data ->> %s = %s"))
            args += [name, value]
        if after is not None:
            parts.append(sql.SQL("(submitted_at, id) > (%s::timestamptz, %s)"))
            args += list(after)
        return sql.SQL(" AND ").join(parts), args

    def chunk(self, cur: Cursor, limit: int) -> ChunkResult:
        """Delete the next ``limit`` matching submissions, journaling each before-image."""
        self.stop.check()
        cond, args = self._match(self._after)
        # The DELETE repeats the match: a row changed by someone else meanwhile so that
        # it no longer matches is re-checked under its lock (PostgreSQL re-evaluates a
        # DELETE's conditions on the newest version of a row it waited for) and stays.
        cur.execute(sql.SQL(
            "WITH doomed AS (SELECT id AS doomed_id, submitted_at AS doomed_at "
            "  FROM collect.submissions WHERE {cond} ORDER BY submitted_at, id LIMIT %s), "
            "gone AS (DELETE FROM collect.submissions USING doomed "
            "  WHERE id = doomed_id AND {cond} RETURNING collect.submissions.*), "
            "journaled AS (INSERT INTO longtask.undo_journal "
            "  (task_uid, table_name, row_id, before_image, after_version) "
            "  SELECT %s, %s, g.id, to_jsonb(g), 0 FROM gone g RETURNING row_id), "
            "last AS (SELECT doomed_at, doomed_id FROM doomed "
            "  ORDER BY doomed_at DESC, doomed_id DESC LIMIT 1) "
            "SELECT (SELECT count(*) FROM doomed), (SELECT count(*) FROM journaled), "
            "  l.doomed_at, l.doomed_id FROM (SELECT 1) one LEFT JOIN last l ON true"
        ).format(cond=cond), [*args, limit, *args, str(self.task.uid), JOURNAL_TABLE])
        matched, deleted, last_at, last_id = cur.fetchone()  # type: ignore[misc]
        if last_id is not None:
            self._after = (last_at.isoformat(), int(last_id))
        return ChunkResult(rows=int(deleted),
                           cursor={"after": list(self._after) if self._after else None},
                           exhausted=int(matched) < limit)
