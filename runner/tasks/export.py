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

import contextlib
import csv
import hashlib
import io
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
from longtask.runner.engine import ChunkResult, Cursor
from longtask.runner.errors import TaskFailed
from longtask.runner.tasks import common
from psycopg2 import sql

from longtask import filestore, storage
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


# A cell a spreadsheet would read as a formula: one that starts with =, @, a tab or a
# carriage return, or with + or - followed by more than a number or a phone number
# ("-2+3+cmd|' /C calc'!A0", "+HYPERLINK(...)"; OWASP, "CSV Injection"). "+919812345678"
# and "-5" are numbers to a spreadsheet and are left alone.
_FORMULA = r"^([=@\t\r]|[+-](?![0-9 .,()+-]*$))"


def _escaped(expression: sql.Composable) -> sql.Composable:
    """``expression`` with a ``'`` put before a value a spreadsheet would run as a formula
    (the spreadsheet then shows the text as it is)."""
    return sql.SQL("CASE WHEN ({e}) ~ {formula} THEN chr(39) || ({e}) ELSE ({e}) END").format(
        e=expression, formula=sql.Literal(_FORMULA))


# The field types whose answers are text people typed or chose; numbers, booleans, dates
# and geopoints are written by the app in their own shapes and are not escaped (escaping
# costs the export about a third of its speed per escaped column: bench/runner_bench.py).
TEXT_TYPES = frozenset({FieldType.TEXT, FieldType.SELECT_ONE, FieldType.SELECT_MULTIPLE,
                        FieldType.PHONE})


def select_list(fields: list[FieldSpec], *, escape_formulas: bool = False) -> sql.Composable:
    """The SELECT list of the export's CSV columns: id, submitted_at (ISO 8601 in the
    session's time zone), then each field as text; with ``escape_formulas``, the cells of
    :data:`TEXT_TYPES` fields that a spreadsheet would run as formulas start with ``'``."""
    cells = [_escaped(_expression(f)) if escape_formulas and f.type in TEXT_TYPES
             else _expression(f) for f in fields]
    return sql.SQL(", ").join(
        [sql.SQL("id"), sql.SQL("to_char(submitted_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.USOF')"),
         *cells])


class Export(common.TaskWork[ExportParams, None]):
    """The run of an Export task (a :class:`~longtask.runner.engine.Work`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start, self.end = self.params.bounds()
        self._after: tuple[str, int] | None = None
        self._part = 0
        self._reader: common.ReadAhead[_Piece] | None = None
        self._copiers: _Copiers | None = None
        self._size = 0  # rows per piece, read by the reading thread

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
        self._select = select_list([by_name[c] for c in wanted],
                                   escape_formulas=self.params.formula_cells == "escape")
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

    def _range(self, after: tuple[str, int] | None) -> tuple[sql.Composable, list[Any]]:
        cond: sql.Composable = sql.SQL(
            "form_id = %s AND submitted_at >= %s AND submitted_at < %s"
        )
        args: list[Any] = [self.form_id, self.start, self.end]
        if after is not None:
            cond = sql.SQL("{} AND (submitted_at, id) > (%s::timestamptz, %s)").format(cond)
            args += list(after)
        return cond, args

    def chunk(self, cur: Cursor, limit: int) -> ChunkResult:
        piece = self._next_piece(limit)
        self.stop.check()
        if self._part == 0 or piece.rows:
            data = piece.data
            if self._part == 0:
                text = io.StringIO()
                csv.writer(text, lineterminator="\n").writerow(self.header)
                data = text.getvalue().encode("utf-8") + data
            self._part += 1
            self._store_part(cur, piece.rows, data)
        self._after = piece.after
        return ChunkResult(
            rows=piece.rows,
            cursor={"after": list(self._after) if self._after else None, "part": self._part},
            exhausted=piece.exhausted,
        )

    def _next_piece(self, limit: int) -> _Piece:
        """The rows after the committed cursor, read ahead by a thread on the read connection.

        Pieces are read at the latest ``limit``, so a chunk holds the rows of the limit
        asked one chunk before: the size follows the engine's time target with a lag of
        one piece, and the rate limit, which counts the rows actually done, holds.
        """
        self._size = limit
        if self._reader is None:
            self._reader = common.ReadAhead(self._pieces(self._after), self.stop, depth=1,
                                            name="longtask-export-read")
        piece = self._reader.next()
        assert piece is not None, "the last piece ends the task"
        return piece

    def _pieces(self, after: tuple[str, int] | None) -> Iterator[_Piece]:
        """Consecutive pieces from ``after``, each of the size last asked, read outside the
        writing transaction (the rows are only read).

        Each piece's last row is found on the read connection (an index-only scan); the
        piece itself is copied there too, or, with ``export_read_connections`` above 1, a
        way to connect and more than one piece to read, by up to that many copiers at
        once, each on a connection of its own, handed out in order.
        """
        with self.read_conn.cursor() as cur:
            self._set_time_zone(cur)
            workers = self.settings.export_read_connections
            last = self._last_row(cur, after, self._size)
            if self.connect is None or workers <= 1 or last is None:
                # Piece after piece on this connection; so too an export that fits in one
                # piece, which then opens no connection more.
                while True:
                    yield self._copy_piece(cur, after, last)
                    if last is None:
                        return
                    after = last
                    last = self._last_row(cur, after, self._size)
            self._copiers = _Copiers(self.connect, workers, self._set_time_zone)
            pending: deque[Future[_Piece]] = deque(
                [self._copiers.submit(self._copy_piece, after, last)])
            after = last
            try:
                while True:
                    while after is not _DONE and len(pending) < workers:
                        last = self._last_row(cur, after, self._size)
                        pending.append(self._copiers.submit(self._copy_piece, after, last))
                        after = _DONE if last is None else last
                    if not pending:
                        return
                    yield pending.popleft().result()
            finally:
                self._copiers.close()

    def _set_time_zone(self, cur: Cursor) -> None:
        cur.execute("SELECT set_config('TimeZone', %s, false)", (self.params.time_zone,))

    def _last_row(self, cur: Cursor, after: tuple[str, int] | None,
                  size: int) -> tuple[str, int] | None:
        """The key of the ``size``-th row after ``after``; None when fewer rows are left."""
        cond, args = self._range(after)
        cur.execute(
            sql.SQL("SELECT submitted_at, id FROM collect.submissions WHERE {} "
                    "ORDER BY submitted_at, id OFFSET %s LIMIT 1").format(cond),
            [*args, size - 1],
        )
        row = cur.fetchone()
        return None if row is None else (row[0].isoformat(), int(row[1]))

    def _copy_piece(self, cur: Cursor, after: tuple[str, int] | None,
                    last: tuple[str, int] | None) -> _Piece:
        """The rows after ``after`` up to ``last`` (None: to the end) as CSV."""
        cond, args = self._range(after)
        upper: sql.Composable = sql.SQL("")
        if last is not None:
            upper = sql.SQL(" AND (submitted_at, id) <= (%s::timestamptz, %s)")
            args += list(last)
        query = sql.SQL("COPY (SELECT {cols} FROM collect.submissions WHERE {cond}{upper} "
                        "ORDER BY submitted_at, id) TO STDOUT WITH (FORMAT csv)").format(
            cols=self._select, cond=cond, upper=upper)
        sink = io.BytesIO()
        cur.copy_expert(cur.mogrify(query, args).decode(), sink)
        return _Piece(rows=cur.rowcount, data=sink.getvalue(),
                      after=after if last is None else last, exhausted=last is None)

    def close(self) -> None:
        """Stop the reading thread, if a chunk started one: a read in flight is cancelled."""
        if self._reader is not None:
            if not self._reader.finished:
                with contextlib.suppress(psycopg2.Error):
                    self.read_conn.cancel()
                if self._copiers is not None:
                    self._copiers.cancel()
            self._reader.close()
            self._reader = None

    def _store_part(self, cur: Cursor, rows: int, data: bytes) -> None:
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
        # The organization's quota, under its usage row's lock (held to the chunk's commit,
        # taken after the task row's, as the retention takes them): QuotaExceeded fails the
        # export with the numbers, and the chunk with its part is rolled back.
        storage.check(cur, self.task.organization, len(data), self.settings.storage_quota_bytes,
                      f"export part {self._part}")
        self.stop.check()  # right before the long statement (see BaselineUpload._copy)
        cur.copy_expert("COPY longtask.export_parts (task_uid, part, rows, data, sha256) "
                        "FROM STDIN (FORMAT binary)", tuple_)


_DONE: Any = object()
"""The reading position once the last piece is asked for."""


class _Copiers:
    """Up to ``workers`` threads copying pieces, each on a read connection of its own
    (opened by ``connect`` at its first piece and prepared by ``prepare``)."""

    def __init__(self, connect: common.Connector, workers: int,
                 prepare: Callable[[Cursor], None]) -> None:
        self._connect = connect
        self._prepare = prepare
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="longtask-export-copy")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[common.Connection] = []

    def submit(self, fn: Callable[..., _Piece], *args: Any) -> Future[_Piece]:
        """Run ``fn(cursor, *args)`` on one of the copiers' connections."""
        return self._pool.submit(self._run, fn, args)

    def _run(self, fn: Callable[..., _Piece], args: tuple[Any, ...]) -> _Piece:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect("export-copy")
            with self._lock:
                self._conns.append(conn)
            with conn.cursor() as cur:
                self._prepare(cur)
        with conn.cursor() as cur:
            return fn(cur, *args)

    def cancel(self) -> None:
        """Cancel the statements in flight (from any thread)."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(psycopg2.Error):
                conn.cancel()

    def close(self) -> None:
        """Cancel what runs, drop what waits, then close the connections."""
        self.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()


@dataclass(frozen=True)
class _Piece:
    """Rows read for one chunk: ``rows`` of them as CSV ``data``, the cursor ``after``
    them, and whether they were the last."""

    rows: int
    data: bytes
    after: tuple[str, int] | None
    exhausted: bool


# COPY's binary format (PostgreSQL documentation, "COPY", section "Binary Format"): the
# signature, flags and header extension length; per tuple the field count, then each field
# as its length and its bytes (uuid: 16 bytes, bigint and int: big-endian, text: UTF-8).
_PART_HEADER = filestore.COPY_BINARY_SIGNATURE + struct.pack("!II", 0, 0)
_PART_FIELDS = struct.Struct("!hi16siqiii")  # count; uuid; part; rows; length of data
_LENGTH = struct.Struct("!i")
_TRAILER = struct.pack("!h", -1)


def read_output(conn: psycopg2.extensions.connection, task_uid: Any) -> bytes:
    """The whole export as one byte string (tests and small exports; the API streams)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT data FROM longtask.export_parts WHERE task_uid = %s ORDER BY part",
            (task_uid,),
        )
        return b"".join(r[0].encode("utf-8") for r in cur.fetchall())
