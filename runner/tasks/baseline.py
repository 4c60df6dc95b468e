"""BaselineUpload: load a CSV into a form's baseline records, undoably.

Rules (also in the README):

- Columns are matched to form fields by header name (see
  :func:`longtask.values.normalize_header`); the key column (``keyColumn``) holds the
  external id. A missing key column or required field, an unknown column, an unnamed column
  or two columns with the same name are refused before anything is written.
- Each value is checked against its field's type; a bad value, a blank external id or a
  structurally broken row is a row error (line, column, reason) and the row is skipped.
- Duplicate external ids inside the file: the first occurrence wins, later ones are row
  errors, whichever chunk they fall in.
- ``mode: insert``: an external id that already exists is a row error, the stored row is
  left alone. ``mode: upsert``: it is updated, and its before-image goes to the undo
  journal in the same transaction.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, cast

import orjson
import psycopg2.errors
from longtask.runner.engine import ChunkResult, Cursor, RowError
from longtask.runner.errors import HeaderError, TaskFailed
from longtask.runner.tasks import common

from longtask.csvsource import RecordBatch
from longtask.tasktypes import BaselineUploadParams, UploadMode
from longtask.values import (
    ColumnParser,
    FieldSpec,
    InvalidFieldSpec,
    make_column_parser,
    normalize_header,
)

_STAGE = "longtask_stage_baseline"


class BaselineUpload(common.TaskWork[BaselineUploadParams, tuple[str, bytes]]):
    """The run of a BaselineUpload task (a :class:`~longtask.runner.engine.Work`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._columns: list[tuple[int, str, ColumnParser]] = []
        self._key_position = 0
        self._width = 0
        self._stage_ready = False

    def open(self, cursor: Mapping[str, Any] | None) -> int | None:
        conn = self.read_conn
        self.org_id = common.organization_id(conn, self.task.organization)
        form = common.load_form(conn, self.org_id, self.params.form)
        self.form_id = form.id
        info, csv_file = common.open_csv(conn, self.params.file_id, self.task.organization,
                                         self.settings, delimiter=self.params.delimiter)
        header = csv_file.header()
        index = common.header_index(header, info.filename)
        self._map_columns(index, header.names, form, info.filename)
        self._width = len(header.names)
        return self.start_reading(info, csv_file, header, cursor, self._width)


    def _map_columns(
        self, index: dict[str, int], names: list[str], form: common.Form, filename: str
    ) -> None:
        key = normalize_header(self.params.key_column)
        if key not in index:
            raise HeaderError(
                f"{filename}, line 1: the key column {self.params.key_column!r} is missing "
                f"(columns: {', '.join(repr(n) for n in names)})"
            )
        self._key_position = index[key]
        fields: dict[str, FieldSpec] = {}
        for f in form.fields:
            twin = fields.setdefault(normalize_header(f.name), f)
            if twin is not f:
                raise TaskFailed(
                    f"form {form.name!r} has fields {twin.name!r} and {f.name!r}, which no "
                    "column name can tell apart (headers are matched ignoring case and "
                    "spaces); rename one of them"
                )
        unknown = [names[i] for k, i in index.items() if k not in fields and k != key]
        if unknown:
            raise HeaderError(
                f"{filename}, line 1: columns not in form {form.name!r}: "
                f"{', '.join(repr(u) for u in unknown)}"
            )
        missing = [f.name for k, f in fields.items() if f.required and k not in index]
        if missing:
            raise HeaderError(
                f"{filename}, line 1: required fields of form {form.name!r} have no column: "
                f"{', '.join(repr(m) for m in missing)}"
            )
        try:
            self._columns = [
                (index[k], f.name, make_column_parser(f)) for k, f in fields.items() if k in index
            ]
        except InvalidFieldSpec as exc:
            raise TaskFailed(f"form {form.name!r} cannot be loaded into: {exc}") from None

    def chunk(self, cur: Cursor, limit: int) -> ChunkResult:
        assert self._prefetch is not None, "open() first"
        batch = self._prefetch.take(limit)
        errors = batch.errors
        rows = self._first_of_each_id(batch.lines, batch.items, errors)
        self.stop.check()
        if rows:
            self._write(cur, rows, errors)
        return ChunkResult(rows=len(batch), cursor=batch.end.to_json(),
                           exhausted=batch.exhausted, errors=errors)

    def _first_of_each_id(self, lines: list[int], items: list[tuple[str, bytes] | None],
                          errors: list[RowError]) -> dict[str, tuple[int, bytes]]:
        """external id -> (line, COPY fields) of the first row with each id; later rows with
        the same id become row errors."""
        if None in items:
            kept = [(line, item) for line, item in zip(lines, items, strict=True) if item]
            lines, items = [k[0] for k in kept], [k[1] for k in kept]
        present = cast("list[tuple[str, bytes]]", items)
        rows = dict(zip(map(itemgetter(0), present),
                        zip(lines, map(itemgetter(1), present), strict=True), strict=True))
        if len(rows) == len(present):
            return rows  # the common case: no id twice
        rows = {}
        for line, (external_id, data) in zip(lines, present, strict=True):
            if external_id in rows:
                errors.append(RowError(
                    line, f"duplicate external id {external_id!r}; first on line "
                    f"{rows[external_id][0]}", self.params.key_column, external_id))
                continue
            rows[external_id] = (line, data)
        return rows

    def parse_rows(self, batch: RecordBatch,
                   errors: list[RowError]) -> list[tuple[str, bytes] | None]:
        """(external id, ``external id TAB data as JSON`` in COPY's text format) of each
        readable record, None for the others, appending their row errors; column by
        column."""
        readable, table = batch.columns()
        items: list[tuple[str, bytes] | None] = [None] * len(batch)
        if not readable:
            return items
        lines = batch.lines
        bad: set[int] = set()  # positions in ``readable``
        key_name = self.params.key_column
        keys = list(map(str.strip, table[self._key_position]))
        if "" in keys or "\x00" in "".join(keys):
            for j, k in enumerate(keys):
                if not k or "\x00" in k:
                    bad.add(j)
                    errors.append(RowError(lines[readable[j]], "the external id is blank"
                                           if not k else "the external id holds a NUL character",
                                           key_name))
        names: list[str] = []
        columns: list[list[Any]] = []
        for position, name, parse in self._columns:
            cells = table[position]
            values, reasons = parse(cells)
            for j, reason in reasons.items():
                bad.add(j)
                errors.append(RowError(lines[readable[j]], reason, name, cells[j]))
            names.append(name)
            columns.append(values)
        rendered = _render(keys, names, columns, bad)
        if not bad and len(readable) == len(items):
            return list(zip(keys, rendered, strict=True))  # type: ignore[arg-type]
        for j, line in enumerate(rendered):
            if line is not None:
                items[readable[j]] = (keys[j], line)
        return items

    def _ensure_stage(self, cur: Cursor) -> None:
        if not self._stage_ready:
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (line bigint, external_id text, "
                "data jsonb, target_id bigint) ON COMMIT DELETE ROWS"
            )
            self._stage_ready = True

    def _write(self, cur: Cursor, rows: dict[str, tuple[int, bytes]],
               errors: list[RowError]) -> None:
        """Insert or update ``rows``; ids already present become row errors or updates."""
        upsert = self.params.mode is UploadMode.UPSERT
        if not upsert and self._copy(cur, rows):
            return  # the common case: none of the ids exists yet
        uid = self.task.uid
        key_col = self.params.key_column
        # One index scan finds the ids that exist; in upsert mode their rows are locked
        # until the chunk commits, so the before-images journaled below stay true.
        cur.execute(
            "SELECT b.external_id, b.id, b.task_uid = %s OR EXISTS ("
            "  SELECT 1 FROM longtask.undo_journal j WHERE j.task_uid = %s "
            "  AND j.table_name = 'baseline_records' AND j.row_id = b.id) "
            "FROM collect.baseline_records b WHERE b.organization_id = %s AND b.form_id = %s "
            "AND b.external_id = ANY(%s)" + (" FOR UPDATE OF b" if upsert else ""),
            (uid, uid, self.org_id, self.form_id, list(rows)),
        )
        targets: dict[str, int] = {}
        for external_id, row_id, ours in cur.fetchall():
            line = rows[external_id][0]
            if ours:  # this task wrote it from an earlier line of the file
                errors.append(RowError(line, f"duplicate external id {external_id!r}; an "
                                       "earlier line of this file has it", key_col, external_id))
            elif not upsert:
                errors.append(RowError(
                    line, f"external id {external_id!r} already exists in form "
                    f"{self.params.form!r} (mode insert leaves it alone; use mode upsert to "
                    "update it)", key_col, external_id))
            else:
                targets[external_id] = row_id
                continue
            del rows[external_id]
        updates = {k: v for k, v in rows.items() if k in targets}
        inserts = {k: v for k, v in rows.items() if k not in targets}
        if updates:
            self._update(cur, updates, targets)
        if inserts and not self._copy(cur, inserts):
            self._insert_checked(cur, inserts, errors)

    def _copy(self, cur: Cursor, rows: dict[str, tuple[int, bytes]]) -> bool:
        """COPY ``rows`` straight into the table under a savepoint.

        Returns False, having written nothing, when an id already exists (someone else's,
        or this task's from an earlier chunk): the caller then sorts the rows out.
        """
        prefix = f"{self.org_id}\t{self.form_id}\t".encode()
        suffix = f"\t{self.task.uid}\n".encode()
        text = b"".join(chain.from_iterable(zip(
            repeat(prefix), map(itemgetter(1), rows.values()), repeat(suffix))))
        cur.execute("SAVEPOINT baseline_copy")
        # A stop's cancel reaching the server between two statements is lost; one taken
        # before this check is seen here, one after it cancels the COPY.
        self.stop.check()
        try:
            cur.copy_expert(
                "COPY collect.baseline_records (organization_id, form_id, external_id, "
                "data, task_uid) FROM STDIN", io.BytesIO(text), size=_COPY_BUFFER)
        except psycopg2.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT baseline_copy")
            cur.execute("RELEASE SAVEPOINT baseline_copy")
            return False
        cur.execute("RELEASE SAVEPOINT baseline_copy")
        return True

    def _stage(self, cur: Cursor, rows: dict[str, tuple[int, bytes]],
               targets: dict[str, int]) -> None:
        """Load ``rows`` into the session's staging table (emptied at commit)."""
        self._ensure_stage(cur)
        cur.execute(f"TRUNCATE {_STAGE}")
        text = b"".join(
            b"%d\t%s\t%s\n" % (line, fields, str(targets.get(external_id, _COPY_NULL)).encode())
            for external_id, (line, fields) in rows.items()
        )
        cur.copy_expert(f"COPY {_STAGE} (line, external_id, data, target_id) FROM STDIN",
                        io.BytesIO(text))

    def _update(self, cur: Cursor, rows: dict[str, tuple[int, bytes]],
                targets: dict[str, int]) -> None:
        """Journal the before-images of existing rows, then update them (upsert mode)."""
        self._stage(cur, rows, targets)
        ids = [targets[k] for k in rows]
        cur.execute(
            "INSERT INTO longtask.undo_journal (task_uid, table_name, row_id, before_image, "
            "after_version) SELECT %s, 'baseline_records', b.id, to_jsonb(b), "
            "b.row_version + 1 FROM collect.baseline_records b WHERE b.id = ANY(%s) "
            "ORDER BY b.id",
            (self.task.uid, ids),
        )
        cur.execute(
            f"UPDATE collect.baseline_records b SET data = s.data FROM {_STAGE} s "
            "WHERE b.id = ANY(%s) AND s.target_id = b.id",
            (ids,),
        )

    def _insert_checked(self, cur: Cursor, rows: dict[str, tuple[int, bytes]],
                        errors: list[RowError]) -> None:
        """Insert ``rows`` one statement at a time against concurrent writers."""
        self._stage(cur, rows, {})
        cur.execute(
            "INSERT INTO collect.baseline_records (organization_id, form_id, external_id, data, "
            f"task_uid) SELECT %s, %s, external_id, data, %s FROM {_STAGE} ORDER BY line "
            "ON CONFLICT (organization_id, form_id, external_id) DO NOTHING RETURNING external_id",
            (self.org_id, self.form_id, self.task.uid),
        )
        inserted = {row[0] for row in cur.fetchall()}
        for external_id, (line, _data) in rows.items():
            if external_id not in inserted:
                errors.append(RowError(line, f"external id {external_id!r} was created by "
                                       "someone else while this chunk ran",
                                       self.params.key_column, external_id))


_COPY_BUFFER = 1 << 20  # bytes handed to libpq at a time: few GIL round trips per chunk
_COPY_NULL = "\\N"
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _render(keys: list[str], names: list[str], columns: list[list[Any]],
            bad: set[int]) -> list[bytes | None]:
    """``external id TAB data as JSON`` in COPY's text format for each row not in ``bad``.

    Blank (None) values are left out of a row's object. The rows are built as text a
    column at a time: a column of strings none of which holds a character that JSON or
    COPY escapes is used as it is (between quotes); a column of integers is written by
    ``str``; other values are encoded by ``orjson``, their backslashes doubled for COPY.
    Then one join interleaves the columns with the text between them (keys, quotes), one
    encode makes the bytes and one split the rows. Rows with a blank value are then encoded
    whole. Keys come in the order jsonb stores them (shorter first, then bytewise: PostgreSQL
    source, ``lengthCompareJsonbStringValue`` in ``jsonb_util.c``), so the server finds
    each object's keys already sorted; any order reads back the same.
    """
    dumps = orjson.dumps
    order = sorted(range(len(names)), key=lambda i: (len(names[i].encode()), names[i].encode()))
    names = [names[i] for i in order]
    columns = [columns[i] for i in order]
    # A row: glue[0] id glue[1] value glue[2] ... glue[-1] (which ends with a line end).
    glue = ["\t{"]
    texts: list[list[str]] = []
    blank: set[int] = set()
    for name, values in zip(names, columns, strict=True):
        key = _copy_json(dumps(name)).decode() + ":"
        quote, filled = "", values
        try:  # the common case: a column of strings, none blank
            joined: str | None = "".join(values)
        except TypeError:
            joined = None
        if joined is None:
            kinds = set(map(type, values))
            if type(None) in kinds:
                blank.update(j for j, v in enumerate(values) if v is None)
                filled = [v if v is not None else "" for v in values]
            if kinds <= {str, type(None)}:
                joined = "".join(filled)
        if joined is not None and not _JSON_SPECIAL.search(joined):
            pieces, quote = filled, '"'
        elif joined is None and kinds == {int}:
            pieces = list(map(str, values))
        else:
            pieces = [_copy_json(dumps(v)).decode() for v in values]
        glue[-1] += ("," if texts else "") + key + quote
        glue.append(quote)
        texts.append(pieces)
    glue[-1] += "}\n"
    ids = [_copy_text(k) for k in keys] if _COPY_SPECIAL.search("".join(keys)) else keys
    streams: list[Iterable[str]] = [ids]
    for between, pieces in zip(glue[:-1], texts, strict=True):
        streams += (repeat(between), pieces)
    streams.append(repeat(glue[-1]))
    # The ids end the zip; the glue repeats. No raw line end is left inside a row: JSON and
    # COPY escape them, and a plain column holds none.
    text = "".join(chain.from_iterable(zip(*streams, strict=False)))
    out = cast("list[bytes | None]", text.encode().split(b"\n"))
    out.pop()
    for j in blank - bad:
        data = dumps({n: c[j] for n, c in zip(names, columns, strict=True) if c[j] is not None})
        out[j] = ids[j].encode() + b"\t" + _copy_json(data)
    for j in bad:
        out[j] = None
    return out


_JSON_SPECIAL = re.compile(r'["\\\x00-\x1f]')
"""What JSON escapes in a string (RFC 8259, section 7); COPY's specials are among them."""


def _copy_json(encoded: bytes) -> bytes:
    """JSON text ready for COPY's text format: its backslashes doubled."""
    return encoded.replace(b"\\", b"\\\\") if b"\\" in encoded else encoded


def _copy_text(value: str) -> str:
    """``value`` in COPY's text format: backslash, tab and line ends escaped."""
    if _COPY_SPECIAL.search(value):
        value = _COPY_SPECIAL.sub(lambda m: _COPY_ESCAPES[m[0]], value)
    return value
