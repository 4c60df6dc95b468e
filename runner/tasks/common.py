"""What the task types share: organization and form lookups, file opening, header mapping."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psycopg2
import psycopg2.extensions
from longtask.runner.engine import RowError, StopToken, TaskDefinition
from longtask.runner.errors import FileUnreadable, HeaderError, TaskFailed

from longtask import filestore, taskrecord
from longtask.csvsource import CsvFile, Header, Position, Record, RecordBatch
from longtask.settings import RunnerSettings
from longtask.values import FieldSpec, FieldType, normalize_header

log = logging.getLogger("longtask.runner")

Connection = psycopg2.extensions.connection
Connector = Callable[[str], Connection]
"""``connect(purpose)``: a new autocommit connection to the task's database, for reading
only; ``purpose`` goes into its application name."""



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
    delimiter: str | None = None,
) -> tuple[filestore.FileInfo, CsvFile]:
    """Open a stored file as CSV; :class:`FileUnreadable` if it is missing. ``delimiter``
    as a task names it, ``None`` to detect it from the header line
    (:func:`longtask.csvsource.detect_delimiter`)."""
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
        delimiter=delimiter,
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


class BackgroundCount:
    """Counts a stored file's data records (the progress total) in a thread of its own, on
    a read connection of its own, so the first chunk does not wait for a whole pass over
    the file (about 6 s for 1 GB). A stop or :meth:`close` ends it; a failure leaves the
    total unknown (progress goes on without it) and is logged.
    """

    def __init__(self, connect: Connector, info: filestore.FileInfo, csv_file: CsvFile,
                 start: Position, stop: StopToken) -> None:
        self._connect = connect
        self._info = info
        self._csv_file = csv_file
        self._start = start
        self._stop = stop
        self._closed = threading.Event()
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self.result: int | None = None
        self._thread = threading.Thread(target=self._count, name="longtask-count", daemon=True)
        self._thread.start()

    def _count(self) -> None:
        try:
            conn = self._connect("count")
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self._conn = conn
            self.result = self._csv_file.count(self._start, source=self._blocks)
        except Exception as exc:  # noqa: BLE001 - the total is only progress information
            if not (self._closed.is_set() or self._stop.is_set()):
                log.warning("count_failed", extra={"error": str(exc)})
        finally:
            with self._lock:
                opened, self._conn = self._conn, None
            if opened is not None:
                opened.close()

    def _blocks(self, offset: int) -> Iterator[bytes]:
        assert self._conn is not None
        for block in filestore.read_blocks(self._conn, self._info, offset):
            if self._closed.is_set() or self._stop.is_set():
                raise _Closed
            yield block

    def close(self) -> None:
        """End the count (a read in flight is cancelled) and wait for it (a second at most)."""
        self._closed.set()
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(psycopg2.Error):
                    self._conn.cancel()
        self._thread.join(timeout=1)


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

RowsParser = Callable[[RecordBatch, list[RowError]], list["T | None"]]
"""``parse(batch, errors)``: the item to write for each record of ``batch`` (None for a bad
row or an unreadable one), appending the row errors it finds."""


@dataclass
class Batch(Generic[T]):
    """Up to ``limit`` records after parsing, in file order.

    ``items[i]`` is what to write for the record on line ``lines[i]`` (None: a bad row, its
    reasons in ``errors``); ``end`` is the cursor after the last one; ``exhausted`` once
    the file has no more.
    """

    lines: list[int]
    items: list[T | None]
    errors: list[RowError]
    end: Position
    exhausted: bool

    def __len__(self) -> int:
        return len(self.lines)


@dataclass
class _Parsed(Generic[T]):
    """A :class:`RecordBatch` after parsing; ``taken`` records of it are handed out."""

    batch: RecordBatch
    items: list[T | None]
    errors: list[RowError]  # sorted by line
    taken: int = 0


READ_BATCH_ROWS = 512
"""Records read and parsed at a time by the reading thread."""
READ_AHEAD_ROWS = 24_576
"""Parsed records that may wait for the writing thread: two chunks of a quarter second at
the upload rates seen (~45k rows/s), so the next chunk is ready when the database has
written this one; about 15 MB of rendered rows at most."""

_END = object()
_STOP_POLL_SECONDS = 0.005
"""How often a thread waiting for the reader looks at the stop token: a stop between
statements is noticed within this (the abort's p95 target is 50 ms)."""


class ReadAhead(Generic[T]):
    """Runs the iterator ``items`` in a thread of its own, at most ``depth`` items ahead.

    A task's reading (files, rows to export) goes on while the writing thread has the
    database store the previous chunk (psycopg2 releases the GIL while a statement runs),
    so Python and PostgreSQL work side by side. The thread ends at the iterator's end, at a
    stop, or at :meth:`close`, and then closes the iterator (a generator's ``finally``
    runs); an exception it meets is raised by :meth:`next`.
    """

    def __init__(self, items: Iterator[T], stop: StopToken, *, depth: int,
                 name: str = "longtask-read-ahead") -> None:
        self._items = items
        self._stop = stop
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self.finished = False
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        items = iter(self._items)
        try:
            # The close is looked at before each item is made, not after: an item taken
            # after close() (an export piece, say) would start work nobody cancels.
            while not (self._closed.is_set() or self._stop.is_set()):
                try:
                    item = next(items)
                except StopIteration:
                    self._put(_END)
                    return
                self._put(item)
        except _Closed:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            with contextlib.suppress(_Closed):
                self._put(exc)
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:  # a generator's own clean-up runs here, in this thread
                close()

    def _put(self, obj: object) -> None:
        while True:
            try:
                self._queue.put(obj, timeout=0.05)
                return
            except queue.Full:
                if self._closed.is_set() or self._stop.is_set():
                    raise _Closed from None

    def next(self) -> T | None:
        """The next item, waiting for it; None at the end. Raises :class:`Stopped` on a
        stop, and the reading thread's exception if it met one.

        The stop is checked at every call, not only while waiting: a chunk gathering
        thousands of rows from a reader that keeps up would otherwise notice it only once
        gathered.
        """
        while not self.finished:
            self._stop.check()
            try:
                got = self._queue.get(timeout=_STOP_POLL_SECONDS)
            except queue.Empty:
                continue
            if got is _END:
                self.finished = True
                break
            if isinstance(got, BaseException):
                raise got
            return got  # type: ignore[return-value]
        return None

    def close(self) -> None:
        """Stop the reading thread and wait for it (a second at most).

        The queue is emptied so that a thread waiting to put an item wakes at once, sees
        the close and ends, rather than at its next poll.
        """
        self._closed.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=1)


class Prefetcher(Generic[T]):
    """Reads and parses records ahead of the chunk being written (a :class:`ReadAhead`).

    Records are read and parsed a :class:`RecordBatch` at a time (column by column where
    the task type can); at most ``depth`` batches wait, bounding memory.
    """

    def __init__(
        self,
        batches: Iterator[RecordBatch],
        parse: RowsParser[T],
        stop: StopToken,
        start: Position,
        *,
        depth: int = 16,
    ) -> None:
        self._parse = parse
        self._stop = stop
        self._end = start
        self._pending: _Parsed[T] | None = None
        self._ahead = ReadAhead(self._parsed(batches), stop, depth=depth,
                                name="longtask-prefetch")

    def _parsed(self, batches: Iterator[RecordBatch]) -> Iterator[_Parsed[T]]:
        for batch in batches:
            errors = [RowError(batch.lines[i], why, batch.problem_columns.get(i))
                      for i, why in batch.problems.items()]
            items = self._parse(batch, errors)
            batch.release()  # the fields are parsed; only lines and cursors are kept
            if errors:
                errors.sort(key=lambda e: e.line)
            yield _Parsed(batch, items, errors)

    def empty(self) -> bool:
        """Whether the reader holds no record at all (waits for its first batch)."""
        if self._pending is None:
            self._pending = self._ahead.next()
        return self._pending is None

    def take(self, limit: int) -> Batch[T]:
        """Up to ``limit`` parsed records in file order; raises :class:`Stopped` on a stop."""
        out: Batch[T] = Batch([], [], [], self._end, False)
        while len(out) < limit:
            if self._pending is None:
                self._pending = self._ahead.next()
                if self._pending is None:
                    break
            parsed = self._pending
            lines, first = parsed.batch.lines, parsed.taken
            last = min(len(lines), first + limit - len(out))
            out.lines.extend(lines[first:last])
            out.items.extend(parsed.items[first:last])
            if parsed.errors:
                boundary = lines[last] if last < len(lines) else None
                keep = [e for e in parsed.errors if boundary is not None and e.line >= boundary]
                out.errors.extend(parsed.errors[: len(parsed.errors) - len(keep)])
                parsed.errors = keep
            out.end = self._end = parsed.batch.end(last - 1)
            parsed.taken = last
            if last == len(lines):
                self._pending = None
        self._stop.check()
        out.exhausted = self._ahead.finished and self._pending is None
        return out

    def close(self) -> None:
        """Stop the reading thread and wait for it (a second at most)."""
        self._ahead.close()


class _Closed(Exception):
    """The consumer went away; the producer ends quietly."""


P = TypeVar("P")
Item = TypeVar("Item")


class TaskWork(Generic[P, Item]):
    """Base of every task type's run: what each is given, and its prefetching reader.

    ``P`` is the type's parameter model; ``Item`` what its reader parses a record into.
    ``connect`` opens more read connections, for a type that reads on several at once
    (None: only ``read_conn``). ``read_ahead=False`` makes :meth:`start_reading` check
    only (the API's dry run, which reads its own bounded sample): no reading thread, no
    count.
    """

    def __init__(
        self,
        task: TaskDefinition,
        params: P,
        read_conn: Connection,
        stop: StopToken,
        settings: RunnerSettings,
        *,
        connect: Connector | None = None,
        read_ahead: bool = True,
    ) -> None:
        self.task = task
        self.read_ahead = read_ahead
        self.params = params
        self.read_conn = read_conn
        self.stop = stop
        self.settings = settings
        self.connect = connect
        self._prefetch: Prefetcher[Item] | None = None
        self._count: BackgroundCount | None = None

    @property
    def max_row_errors(self) -> int | None:
        """The params' ``maxRowErrors``, for types that have one."""
        limit = getattr(self.params, "max_row_errors", None)
        return None if limit is None else int(limit)

    def parse_rows(self, batch: RecordBatch, errors: list[RowError]) -> list[Item | None]:
        """What to write for each record of ``batch`` (a :data:`RowsParser`); task types
        that read files override it."""
        raise NotImplementedError

    def parse(self, record: Record, errors: list[RowError]) -> Item | None:
        """One readable record through :meth:`parse_rows`, appending its row errors (the
        API's dry run reads records one at a time)."""
        batch = RecordBatch(record.end.record - 1, [record.line],
                            [(record.end.offset, record.end.line)], [record.fields])
        return self.parse_rows(batch, errors)[0]

    def start_reading(self, info: filestore.FileInfo, csv_file: CsvFile, header: Header,
                      cursor: Mapping[str, Any] | None, width: int | None) -> int | None:
        """Start the prefetching reader after ``cursor`` (None: after the header).

        On a first start raises :class:`FileUnreadable` for a file with no data rows, and
        counts the records (the progress total): beside the chunks when it can open a
        connection (:meth:`total` gives it later), else at once (returned). On a resume,
        counts beside the chunks only if an earlier run stopped before its count ended.
        """
        if not self.read_ahead:
            # Checks only: a first start's "no data rows", from one record at most.
            if cursor is None and next(csv_file.batches(header.end, width, 1), None) is None:
                raise FileUnreadable(f"{csv_file.filename} has no data rows")
            return None
        # read_conn serves one thread at a time: what the main thread reads on it comes
        # before the reading thread starts.
        total = None
        count_beside = self.connect is not None and (cursor is None
                                                     or not self._total_recorded())
        if cursor is None and self.connect is None:
            total = count_records(csv_file, header, self.stop)
        start = header.end if cursor is None else Position.from_json(dict(cursor))
        self._prefetch = Prefetcher(csv_file.batches(start, width, READ_BATCH_ROWS),
                                    self.parse_rows, self.stop, start,
                                    depth=READ_AHEAD_ROWS // READ_BATCH_ROWS)
        # The reader decides, with a count or without: the count may take a row of
        # Unicode-only spaces for one, where the reader skips it as blank.
        if cursor is None and self._prefetch.empty():
            raise FileUnreadable(f"{csv_file.filename} has no data rows")
        if count_beside:
            assert self.connect is not None
            self._count = BackgroundCount(self.connect, info, csv_file, header.end, self.stop)
        return total

    def _total_recorded(self) -> bool:
        with self.read_conn.cursor() as cur:
            return taskrecord.total_recorded(cur, self.task.uid)

    def total(self) -> int | None:
        """The record count, once the background count has it (see :meth:`start_reading`)."""
        return None if self._count is None else self._count.result

    def close(self) -> None:
        """Stop the reading thread and the count, if :meth:`open` started them."""
        if self._count is not None:
            self._count.close()
        if self._prefetch is not None:
            self._prefetch.close()
