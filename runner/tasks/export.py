"""Export: a form's submissions in a date range, as CSV parts committed with the cursor.

Each chunk selects the next rows in ``(submitted_at, id)`` order and writes them as one
part of ``longtask.export_parts`` in the same transaction as the cursor, so a resumed export
appends exactly where it stopped and a rollback removes the parts. The CSV text is made by
PostgreSQL's own ``COPY ... TO STDOUT (FORMAT csv)``; the first part carries the header.

Columns: ``submission_id``, ``submitted_at`` (ISO 8601 in the task's time zone), then the
form's fields in order (or the ``columns`` asked for). A ``select_multiple`` answer is
written space-separated and a ``geopoint`` as ``"lat lon"``, as the collection apps export
them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import struct
from collections.abc import Mapping
from typing import Any

import psycopg2.extensions
from longtask.runner.engine import ChunkResult, Cursor
from longtask.runner.errors import TaskFailed
from longtask.runner.tasks import common
from psycopg2 import sql

from longtask.tasktypes import ExportParams
from longtask.values import FieldSpec, FieldType

FIXED_COLUMNS = ("submission_id", "submitted_at")


def _expression(field: FieldSpec) -> sql.Composable:
    """SQL rendering one field of ``data`` as CSV text."""
    key = sql.Literal(field.name)
    if field.type is FieldType.SELECT_MULTIPLE:
        return sql.SQL(
            "CASE jsonb_typeof(data->{k}) WHEN 'array' THEN "
            "array_to_string(ARRAY(SELECT jsonb_array_elements_text(data->{k})), ' ') "
            "ELSE data->>{k} END"
        ).format(k=key)
    if field.type is FieldType.GEOPOINT:
        return sql.SQL(
            "CASE jsonb_typeof(data->{k}) WHEN 'object' THEN "
            "(data->{k}->>'lat') || ' ' || (data->{k}->>'lon') ELSE data->>{k} END"
        ).format(k=key)
    return sql.SQL("data->>{k}").format(k=key)


def select_list(fields: list[FieldSpec]) -> sql.Composable:
    """The SELECT list of the export's CSV columns: id, submitted_at (ISO 8601 in the
    session's time zone), then each field as text."""
    return sql.SQL(", ").join(
        [sql.SQL("id"), sql.SQL("to_char(submitted_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.USOF')"),
         *(_expression(f) for f in fields)]
    )


class Export(common.TaskWork[ExportParams, None]):
    """The run of an Export task (a :class:`~longtask.runner.engine.Work`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start, self.end = self.params.bounds()
        self._after: tuple[str, int] | None = None
        self._part = 0

    def open(self, cursor: Mapping[str, Any] | None) -> int | None:
        conn = self.read_conn
        org_id = common.organization_id(conn, self.task.organization)
        form = common.load_form(conn, org_id, self.params.form)
        self.form_id = form.id
        by_name = {f.name: f for f in form.fields}
        wanted = self.params.columns or [f.name for f in form.fields]
        unknown = [c for c in wanted if c not in by_name]
        if unknown:
            raise TaskFailed(
                f"columns not in form {form.name!r}: {', '.join(map(repr, unknown))} "
                f"(its fields: {', '.join(map(repr, by_name))})"
            )
        self.header = [*FIXED_COLUMNS, *wanted]
        self._select = select_list([by_name[c] for c in wanted])
        if cursor:
            after = cursor.get("after")
            self._after = (after[0], int(after[1])) if after else None
            self._part = int(cursor.get("part", 0))
            return None
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM collect.submissions WHERE form_id = %s "
                "AND submitted_at >= %s AND submitted_at < %s",
                (self.form_id, self.start, self.end),
            )
            return int(cur.fetchone()[0])  # type: ignore[index]

    def _range(self) -> tuple[sql.Composable, list[Any]]:
        cond: sql.Composable = sql.SQL(
            "form_id = %s AND submitted_at >= %s AND submitted_at < %s"
        )
        args: list[Any] = [self.form_id, self.start, self.end]
        if self._after is not None:
            cond = sql.SQL("{} AND (submitted_at, id) > (%s::timestamptz, %s)").format(cond)
            args += list(self._after)
        return cond, args

    def chunk(self, cur: Cursor, limit: int) -> ChunkResult:
        cond, args = self._range()
        # The chunk's last row (the cursor it ends on), and the task's time zone for the
        # rest of the transaction, in one round trip.
        cur.execute(
            sql.SQL("SELECT b.submitted_at, b.id FROM (SELECT set_config('TimeZone', %s, true)) "
                    "AS zone LEFT JOIN LATERAL (SELECT submitted_at, id FROM "
                    "collect.submissions WHERE {} ORDER BY submitted_at, id OFFSET %s LIMIT 1) "
                    "AS b ON true").format(cond),
            [self.params.time_zone, *args, limit - 1],
        )
        last = cur.fetchone()
        boundary = last if last is not None and last[1] is not None else None
        upper: sql.Composable = sql.SQL("")
        upper_args: list[Any] = []
        if boundary is not None:
            upper = sql.SQL(" AND (submitted_at, id) <= (%s::timestamptz, %s)")
            upper_args = [boundary[0], boundary[1]]
        self.stop.check()
        query = sql.SQL("COPY (SELECT {cols} FROM collect.submissions WHERE {cond}{upper} "
                        "ORDER BY submitted_at, id) TO STDOUT WITH (FORMAT csv)").format(
            cols=self._select, cond=cond, upper=upper)
        buffer = io.BytesIO()
        if self._part == 0:
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerow(self.header)
            buffer.write(text.getvalue().encode("utf-8"))
        header_bytes = buffer.tell()
        cur.copy_expert(cur.mogrify(query, [*args, *upper_args]).decode(), buffer)
        exhausted = boundary is None
        with buffer.getbuffer() as data:
            rows = _count_records(bytes(data[header_bytes:])) if exhausted else limit
            if len(data):
                self._part += 1
                self._store_part(cur, rows, data)
        if boundary is not None:
            self._after = (boundary[0].isoformat(), int(boundary[1]))
        return ChunkResult(
            rows=rows,
            cursor={"after": list(self._after) if self._after else None, "part": self._part},
            exhausted=exhausted,
        )

    def _store_part(self, cur: Cursor, rows: int, data: memoryview) -> None:
        """Insert the part with a binary COPY: the CSV bytes go as they are, with no quoting
        for an SQL literal and nothing for the server's parser to scan."""
        digest = hashlib.sha256(data).hexdigest().encode()
        tuple_ = io.BytesIO()
        tuple_.write(_PART_HEADER)
        tuple_.write(_PART_FIELDS.pack(5, 16, self.task.uid.bytes, 8, self._part, 4, rows,
                                       len(data)))
        tuple_.write(data)
        tuple_.write(_LENGTH.pack(len(digest)))
        tuple_.write(digest)
        tuple_.write(_TRAILER)
        tuple_.seek(0)
        cur.copy_expert("COPY longtask.export_parts (task_uid, part, rows, data, sha256) "
                        "FROM STDIN (FORMAT binary)", tuple_)


# COPY's binary format (PostgreSQL documentation, "COPY", section "Binary Format"): the
# signature, flags and header extension length; per tuple the field count, then each field
# as its length and its bytes (uuid: 16 bytes, bigint and int: big-endian, text: UTF-8).
_PART_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!II", 0, 0)
_PART_FIELDS = struct.Struct("!hi16siqiii")  # count; uuid; part; rows; length of data
_LENGTH = struct.Struct("!i")
_TRAILER = struct.pack("!h", -1)


def _count_records(data: bytes) -> int:
    """Records in CSV ``data`` (quoted fields may hold newlines)."""
    return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8"))))


def read_output(conn: psycopg2.extensions.connection, task_uid: Any) -> bytes:
    """The whole export as one byte string (tests and small exports; the API streams)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT data FROM longtask.export_parts WHERE task_uid = %s ORDER BY part",
            (task_uid,),
        )
        return b"".join(r[0].encode("utf-8") for r in cur.fetchall())
