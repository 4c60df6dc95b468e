"""What the task types share: organization and form lookups, file opening, header mapping."""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psycopg2.extensions
from longtask.runner import filestore
from longtask.runner.csvsource import CsvFile, Header, Position, Record
from longtask.runner.engine import RowError, StopToken, TaskDefinition
from longtask.runner.errors import FileUnreadable, HeaderError, TaskFailed

from longtask.settings import RunnerSettings
from longtask.values import FieldSpec, FieldType, normalize_header

Connection = psycopg2.extensions.connection



def organization_id(conn: Connection, slug: str) -> int:
    """The id of organization ``slug``; :class:`TaskFailed` when there is none."""
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM collect.organizations WHERE slug = %s", (slug,))
        row = cur.fetchone()
    if row is None:
        raise TaskFailed(f"organization {slug!r} does not exist")
    return int(row[0])


@dataclass(frozen=True)
class Form:
    """A form and its fields in position order."""

    id: int
    name: str
    fields: list[FieldSpec]


def load_form(conn: Connection, organization_id: int, name: str) -> Form:
    """Form ``name`` of the organization with its fields; :class:`TaskFailed` if absent."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM collect.forms WHERE organization_id = %s AND name = %s",
            (organization_id, name),
        )
        row = cur.fetchone()
        if row is None:
            raise TaskFailed(f"form {name!r} does not exist in this organization")
        form_id = int(row[0])
        cur.execute(
            "SELECT name, type, required, options FROM collect.form_fields "
            "WHERE form_id = %s ORDER BY position",
            (form_id,),
        )
        fields = [
            FieldSpec(name=n, type=FieldType(t), required=bool(r), options=o)
            for n, t, r, o in cur.fetchall()
        ]
    return Form(form_id, name, fields)


def open_csv(
    read_conn: Connection,
    file_id: uuid.UUID,
    organization: str,
    settings: RunnerSettings,
    *,
    has_header: bool = True,
) -> tuple[filestore.FileInfo, CsvFile]:
    """Open a stored file as CSV; :class:`FileUnreadable` if it is missing."""
    try:
        info = filestore.info(read_conn, file_id, organization)
    except filestore.FileNotFound as exc:
        raise FileUnreadable(str(exc)) from None
    head = next(filestore.read_blocks(read_conn, info), b"")

    def source(offset: int) -> Iterator[bytes]:
        return filestore.read_blocks(read_conn, info, offset)

    return info, CsvFile(
        source,
        encoding=info.encoding,
        head=head,
        has_header=has_header,
        max_field_chars=settings.max_field_chars,
        max_line_bytes=settings.max_record_chars,
        filename=info.filename,
    )


def header_index(header: Header, filename: str) -> dict[str, int]:
    """Map each normalised header name to its 0-based column.

    Raises :class:`HeaderError` for an empty name between named columns or for two columns
    whose names are equal once normalised (say which columns, 1-based).
    """
    index: dict[str, int] = {}
    for position, raw in enumerate(header.names):
        key = normalize_header(raw)
        if not key:
            raise HeaderError(f"{filename}, line 1: column {position + 1} has no name")
        if key in index:
            raise HeaderError(
                f"{filename}, line 1: columns {index[key] + 1} and {position + 1} have the same "
                f"name {raw.strip()!r}; rename one of them"
            )
        index[key] = position
    return index


def count_records(csv_file: CsvFile, header: Header, stop: StopToken) -> int:
    """Count the data records after ``header`` (the progress total); checks for stop."""
    stop.check()
    total = csv_file.count(header.end)
    stop.check()
    return total


def column_of(ref: str, index: dict[str, int], what: str, filename: str) -> int:
    """Resolve a column reference (header name or ``#N``) to a 0-based position."""
    if ref.startswith("#") and ref[1:].isdigit():
        return int(ref[1:]) - 1
    key = normalize_header(ref)
    if key not in index:
        raise HeaderError(f"{filename}, line 1: no column named {ref!r} for the {what}")
    return index[key]


def cell(fields: Sequence[str], position: int) -> str:
    """The cell at ``position``, or ``""`` when the row is shorter."""
    return fields[position] if position < len(fields) else ""



T = TypeVar("T")


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """One record after parsing: its ``item`` (None if bad), its row errors, its end."""

    line: int
    item: T | None
    errors: list[RowError]
    end: Position


@dataclass
class Batch(Generic[T]):
    """Up to ``limit`` parsed records; ``exhausted`` once the file has no more."""

    records: list[Parsed[T]]
    end: Position
    exhausted: bool


_END = object()


class Prefetcher(Generic[T]):
    """Reads and parses records in a thread of its own, ahead of the chunk being written.

    The database does a chunk's writes while this thread parses the next one (psycopg2
    releases the GIL while a statement runs), so Python and PostgreSQL work side by side.
    At most ``depth`` lists of ``batch`` records wait, bounding memory. ``parse(record,
    errors)`` returns the item to write or None, appending row errors.
    """

    def __init__(
        self,
        records: Iterator[Record],
        parse: Callable[[Record, list[RowError]], T | None],
        stop: StopToken,
        start: Position,
        *,
        batch: int = 64,
        depth: int = 64,
    ) -> None:
        self._records = records
        self._parse = parse
        self._stop = stop
        self._end = start
        self._batch = batch
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._pending: list[Parsed[T]] = []
        self._closed = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._produce, name="longtask-prefetch",
                                        daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            out: list[Parsed[T]] = []
            for record in self._records:
                if self._closed.is_set() or self._stop.is_set():
                    return
                errors: list[RowError] = []
                if record.fields is None:
                    errors.append(RowError(record.line, record.error or "unreadable row"))
                    item = None
                else:
                    item = self._parse(record, errors)
                out.append(Parsed(record.line, item, errors, record.end))
                if len(out) >= self._batch:
                    self._put(out)
                    out = []
            if out:
                self._put(out)
            self._put(_END)
        except _Closed:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put_final(exc)

    def _put(self, obj: object) -> None:
        while True:
            try:
                self._queue.put(obj, timeout=0.05)
                return
            except queue.Full:
                if self._closed.is_set() or self._stop.is_set():
                    raise _Closed from None

    def _put_final(self, obj: object) -> None:
        with contextlib.suppress(_Closed):
            self._put(obj)

    def take(self, limit: int) -> Batch[T]:
        """Up to ``limit`` parsed records in file order; raises :class:`Stopped` on a stop."""
        taken: list[Parsed[T]] = []
        while len(taken) < limit and not self._finished:
            if not self._pending:
                try:
                    got = self._queue.get(timeout=0.05)
                except queue.Empty:
                    self._stop.check()
                    continue
                if got is _END:
                    self._finished = True
                    break
                if isinstance(got, BaseException):
                    raise got
                self._pending = got  # type: ignore[assignment]
            room = limit - len(taken)
            taken.extend(self._pending[:room])
            self._pending = self._pending[room:]
        self._stop.check()
        if taken:
            self._end = taken[-1].end
        return Batch(taken, self._end, self._finished and not self._pending)

    def close(self) -> None:
        """Stop the reading thread and wait for it (a second at most)."""
        self._closed.set()
        self._thread.join(timeout=1)


class _Closed(Exception):
    """The consumer went away; the producer ends quietly."""


P = TypeVar("P")
Item = TypeVar("Item")


class TaskWork(Generic[P, Item]):
    """Base of every task type's run: what each is given, and its prefetching reader.

    ``P`` is the type's parameter model; ``Item`` what its reader parses a record into.
    """

    def __init__(
        self,
        task: TaskDefinition,
        params: P,
        read_conn: Connection,
        stop: StopToken,
        settings: RunnerSettings,
    ) -> None:
        self.task = task
        self.params = params
        self.read_conn = read_conn
        self.stop = stop
        self.settings = settings
        self._prefetch: Prefetcher[Item] | None = None

    @property
    def max_row_errors(self) -> int | None:
        """The params' ``maxRowErrors``, for types that have one."""
        limit = getattr(self.params, "max_row_errors", None)
        return None if limit is None else int(limit)

    def start_reading(self, csv_file: CsvFile, header: Header,
                      cursor: Mapping[str, Any] | None, width: int | None,
                      parse: Callable[[Record, list[RowError]], Item | None]) -> int | None:
        """Start the prefetching reader after ``cursor`` (None: after the header).

        On a first start, counts the records (the progress total; returned) and raises
        :class:`FileUnreadable` for a file with no data rows; on a resume returns None.
        """
        total = None
        if cursor is None:
            total = count_records(csv_file, header, self.stop)
            if total == 0:
                raise FileUnreadable(f"{csv_file.filename} has no data rows")
            start = header.end
        else:
            start = Position.from_json(dict(cursor))
        self._prefetch = Prefetcher(csv_file.records(start, width), parse, self.stop, start)
        return total

    def close(self) -> None:
        """Stop the reading thread, if :meth:`open` started one."""
        if self._prefetch is not None:
            self._prefetch.close()
