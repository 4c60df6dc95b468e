"""Resumable CSV reading with byte-exact positions, bounded memory and row-level errors.

A :class:`Position` (byte offset, physical line, records read) is the cursor a checkpoint
stores; :meth:`CsvFile.records` resumes from one without re-reading what came before.

How the file is read (the rules people who make these files expect, RFC 4180 where it
speaks):

- Bytes are split into physical lines on ``\\n`` (``\\r\\n`` and ``\\n`` line ends); a file
  with no ``\\n`` at all but ``\\r`` (old Mac) is split on ``\\r``. Every stored file is
  ASCII-compatible (see :mod:`longtask.filestore`), so splitting bytes is exact.
- Each line is decoded in the file's encoding; a UTF-8 BOM before the header is dropped.
- Python's :mod:`csv` joins lines into records, so quoted fields may hold commas, quotes
  (``""``) and line breaks. A record's line number is that of its first physical line.
  A stretch of lines with no quote and no stray carriage return, which :mod:`csv` would
  read as one record per line split at every comma, is split by C string methods instead,
  column by column: the same records, three times faster.
- A physical line longer than ``max_line_bytes`` or a field longer than ``max_field_chars``
  is a row error; memory stays bounded whatever the file holds. The error names its
  column (the header's name, or ``#N``) where the record's text shows it: the field over
  the limit, the field an over-long line is in when it crosses the limit (a line that
  begins its record, with no quote before that point), the quoted field left open; where
  it does not, the reason gives the byte offset the line or record starts at.
- Blank lines and rows whose fields are all empty (spreadsheets leave them) are skipped.
- Fields beyond the header's width are allowed only when empty (spreadsheets' trailing
  commas); a row with fewer fields, or extra non-empty ones, is a row error.
- The delimiter is a comma unless the file says otherwise: named (a task's ``delimiter``
  parameter), or detected from the header line (:func:`detect_delimiter`): the one of
  comma, semicolon (what Excel saves as "CSV" in many European locales), tab and pipe
  that occurs most often outside quotes, a comma when none does or on a tie.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import add
from typing import NamedTuple

from longtask.errors import FileUnreadable

BlockSource = Callable[[int], Iterator[bytes]]
"""``source(offset)`` yields the file's bytes from byte ``offset`` on, in blocks."""

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
"""The delimiters a file may use, by character, with the names errors and reports use."""


def detect_delimiter(head: bytes) -> str:
    """The delimiter of a CSV file from its first line (``head``: the file's first bytes):
    the one of :data:`DELIMITERS` found most often outside double quotes, ``","`` when
    none is found or on a tie with a comma. Every stored file is ASCII-compatible
    (:mod:`longtask.filestore`), so the delimiters are found in its bytes."""
    cut = min((i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0), default=len(head))
    line = head[:cut]
    outside = b"".join(line.split(b'"')[::2])  # the text between quoted parts
    counts = {d: outside.count(d.encode("ascii")) for d in DELIMITERS}
    best = max(counts.values())
    if best == 0 or counts[","] == best:
        return ","
    return next(d for d, n in counts.items() if n == best)


def delimiter_name(delimiter: str) -> str:
    """What :data:`DELIMITERS` calls ``delimiter`` (``semicolon``), or the character."""
    return DELIMITERS.get(delimiter, repr(delimiter))


@dataclass(frozen=True)
class Position:
    """A cursor into a file: the next record starts at byte ``offset`` on line ``line``.

    ``record`` counts the data records read before it (the header is not one).
    """

    offset: int = 0
    line: int = 1
    record: int = 0

    def to_json(self) -> dict[str, int]:
        """The JSON shape stored in a checkpoint."""
        return {"offset": self.offset, "line": self.line, "record": self.record}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Position:
        """Inverse of :meth:`to_json`."""
        return cls(int(data["offset"]), int(data["line"]), int(data["record"]))


@dataclass(frozen=True)
class Record:
    """One data record: its first ``line``, its ``fields`` or the ``error`` that spoiled it
    (with the ``column`` at fault, when it is known)."""

    line: int
    fields: list[str] | None
    error: str | None
    end: Position
    column: str | None = None


@dataclass(frozen=True)
class Header:
    """The header record: raw ``names`` (BOM and trailing empty names dropped)."""

    names: list[str]
    end: Position


class RecordBatch:
    """Consecutive data records, read in one go (what the runner's reading thread parses).

    Record ``i`` starts on physical line ``lines[i]``; ``ends[i]`` is the ``(offset, line)``
    right after it; ``before`` counts the data records read before the batch, so record
    ``i`` is data record number ``before + i + 1``. Its fields are :attr:`rows` ``[i]``, or
    None when it could not be read, ``problems[i]`` then saying why (``problem_columns[i]``
    naming the column at fault, when known). A batch the reader
    split without :mod:`csv` holds its fields column by column (:meth:`columns`) and makes
    rows only when asked.
    """

    __slots__ = ("_columns", "_rows", "before", "ends", "lines", "problem_columns", "problems")

    def __init__(self, before: int, lines: list[int] | None = None,
                 ends: list[tuple[int, int]] | None = None,
                 rows: list[list[str] | None] | None = None,
                 problems: dict[int, str] | None = None, *,
                 columns: list[list[str]] | None = None,
                 problem_columns: dict[int, str] | None = None) -> None:
        self.before = before
        self.lines = [] if lines is None else lines
        self.ends = [] if ends is None else ends
        self.problems = {} if problems is None else problems
        self.problem_columns = {} if problem_columns is None else problem_columns
        self._columns = columns
        self._rows = rows if rows is not None or columns is not None else []

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def rows(self) -> list[list[str] | None]:
        """The fields of each record (None: unreadable, see ``problems``)."""
        if self._rows is None:
            assert self._columns is not None
            self._rows = list(map(list, zip(*self._columns, strict=True)))
        return self._rows

    def columns(self) -> tuple[list[int], list[list[str]] | list[tuple[str, ...]]]:
        """(positions of the readable records, their fields column by column).

        The columns are as long as the positions list; there are none when no record is
        readable. Rows must all be as wide (they are when read with a header width).
        """
        if self._columns is not None:
            return list(range(len(self.lines))), self._columns
        rows = self.rows
        readable = [i for i, fields in enumerate(rows) if fields is not None]
        if len(readable) == len(rows):
            return readable, list(zip(*rows, strict=True))
        return readable, list(zip(*(rows[i] for i in readable), strict=True))

    def release(self) -> None:
        """Drop the fields (once parsed); lines, cursors and problems stay."""
        self._rows, self._columns = [], None

    def end(self, i: int) -> Position:
        """The cursor right after record ``i`` (0-based, in this batch)."""
        offset, line = self.ends[i]
        return Position(offset, line, self.before + i + 1)

    def record(self, i: int) -> Record:
        """Record ``i`` as a :class:`Record`."""
        return Record(self.lines[i], self.rows[i], self.problems.get(i), self.end(i),
                      self.problem_columns.get(i))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordBatch):
            return NotImplemented
        return (self.before, self.lines, self.ends, self.rows, self.problems,
                self.problem_columns) == (other.before, other.lines, other.ends, other.rows,
                                          other.problems, other.problem_columns)

    __hash__ = None  # type: ignore[assignment]


class _BadLine(NamedTuple):
    """Why a physical line could not be read, the byte ``offset`` where it starts, and the
    0-based column it crosses the length limit in, when that can be told from its bytes."""

    reason: str
    offset: int
    column: int | None = None


@dataclass
class _Segment:
    """Whole physical lines of the file, cut from a block.

    ``ends[i]`` is the byte offset after line ``i``, whose number is ``first_line + i``.
    ``longest`` is the longest line's length in bytes. ``text`` is the whole segment
    decoded, when every line decoded and none is over the limit; otherwise ``lines``
    holds each line decoded, a bad one replaced by an empty line and what was wrong kept
    in ``bad``, by line number.
    """

    first_line: int
    start: int
    ends: list[int]
    text: str | None
    longest: int
    lines: list[str] | None = None
    bad: dict[int, _BadLine] = field(default_factory=dict)


def _column_at(line: bytes, limit: int, delimiter: bytes = b",") -> int | None:
    """The 0-based field of ``line`` (the start of a record) holding byte ``limit``: the
    delimiters before it, when no quote comes before it (else None)."""
    head = line[:limit]
    return None if b'"' in head else head.count(delimiter)


class _LineFeed:
    """Cuts the file's bytes into :class:`_Segment` s of whole lines, a block at a time.

    A segment is decoded and split by C code in one go; only a segment holding an
    undecodable or overlong line is taken line by line.
    """

    def __init__(self, source: Iterator[bytes], encoding: str, separator: bytes,
                 max_line_bytes: int, start: Position, delimiter: str = ",") -> None:
        self._source = source
        self._delimiter = delimiter.encode("ascii")
        self._encoding = encoding
        self._sep = separator
        text_sep = re.escape(separator.decode("ascii"))
        self._text_line = re.compile("[^" + text_sep + "]*" + text_sep)
        self._max = max_line_bytes
        self.overlong = f"line is longer than the limit of {max_line_bytes} bytes"
        self._line = start.line  # number of the next segment's first line
        self._offset = start.offset  # byte offset where the next segment starts

    def text_lines(self, segment: _Segment) -> list[str]:
        """The decoded lines of ``segment``, each with its line end (what :mod:`csv` reads)."""
        if segment.lines is None:
            assert segment.text is not None
            segment.lines = self._text_line.findall(segment.text)
        return segment.lines

    def segments(self) -> Iterator[_Segment]:
        """The segments in file order, the last line maybe without a line end."""
        sep, limit = self._sep, self._max
        tail = b""
        skipped = -1  # bytes of an overlong line being skipped; -1: not skipping
        column: int | None = None  # where the line being skipped crossed the limit
        for block in self._source:
            if skipped >= 0:
                end = block.find(sep)
                if end < 0:
                    skipped += len(block)
                    continue
                yield self._bad_line(skipped + end + 1, column)
                skipped = -1
                block = block[end + 1:]
            data = tail + block if tail else block
            cut = data.rfind(sep) + 1
            tail = data[cut:]
            if cut:
                yield self._segment(data[:cut] if tail else data)
            if len(tail) > limit:
                column = _column_at(tail, limit, self._delimiter)
                skipped, tail = len(tail), b""
        if skipped >= 0:
            yield self._bad_line(skipped, column)
        elif tail:
            yield self._segment(tail + sep, unterminated=True)

    def _segment(self, seg: bytes, *, unterminated: bool = False) -> _Segment:
        parts = seg.split(self._sep)
        parts.pop()  # the empty piece after the segment's last separator
        first, start = self._line, self._offset
        # Line i ends after its bytes and those before it, plus i + 1 separators.
        ends = list(map(add, accumulate(map(len, parts)), range(start + 1, start + len(parts) + 1)))
        if unterminated:
            ends[-1] -= 1  # the separator added to read the last line
        self._line += len(parts)
        self._offset = ends[-1]
        longest = max(map(len, parts)) + 1
        if longest <= self._max:
            with contextlib.suppress(UnicodeDecodeError):
                return _Segment(first, start, ends, seg.decode(self._encoding), longest)
        segment = _Segment(first, start, ends, None, longest, [])
        lines = segment.lines
        assert lines is not None
        text_sep = self._sep.decode("ascii")
        for i, line in enumerate(parts):
            number = first + i
            at = ends[i - 1] if i else start  # where the line starts in the file
            if len(line) + (0 if unterminated and i == len(parts) - 1 else 1) > self._max:
                segment.bad[number] = _BadLine(self.overlong, at,
                                               _column_at(line, self._max, self._delimiter))
                lines.append(text_sep)
                continue
            try:
                lines.append(line.decode(self._encoding) + text_sep)
            except UnicodeDecodeError as exc:
                segment.bad[number] = _BadLine(
                    f"bytes at column {exc.start + 1} are not valid {self._encoding}", at)
                lines.append(text_sep)
        return segment

    def _bad_line(self, length: int, column: int | None) -> _Segment:
        first, start = self._line, self._offset
        self._line, self._offset = first + 1, start + length
        return _Segment(first, start, [start + length], None, length, [self._sep.decode()],
                        {first: _BadLine(self.overlong, start, column)})


class _Pump:
    """Hands :mod:`csv` the lines of a segment and, while a record goes on, of the next ones.

    Knows the line number and byte offset after the last line handed out, whether that
    line ended a segment (so the next may be split without :mod:`csv`), and the text
    handed out since :meth:`mark` (a record's, for its error's column; lines of earlier
    segments are kept only while a record runs across them).
    """

    def __init__(self, feed: _LineFeed, segment: _Segment, segments: Iterator[_Segment]) -> None:
        self._feed = feed
        self._segments = segments
        self._segment = segment
        self._lines = feed.text_lines(segment)
        self._index = 0
        self.bad = dict(segment.bad)
        self._mark = 0  # index in this segment's lines where the record began
        self._carried: list[str] | None = None  # its lines in earlier segments

    def __iter__(self) -> Iterator[str]:
        while True:
            lines = self._lines
            while self._index < len(lines):
                self._index += 1
                yield lines[self._index - 1]
            segment = next(self._segments, None)
            if segment is None:
                return
            if self._carried is None:
                self._carried = lines[self._mark:]
            else:
                self._carried.extend(lines)
            self._segment, self._lines, self._index = segment, self._feed.text_lines(segment), 0
            self._mark = 0
            self.bad.update(segment.bad)

    def mark(self) -> None:
        """A record begins with the next line handed out."""
        self._mark, self._carried = self._index, None

    def record_text(self) -> str:
        """The lines handed out since :meth:`mark`."""
        here = "".join(self._lines[self._mark:self._index])
        return here if self._carried is None else "".join(self._carried) + here

    @property
    def line(self) -> int:
        """The number of the next line to hand out."""
        return self._segment.first_line + self._index

    @property
    def offset(self) -> int:
        """The byte offset after the last line handed out."""
        return self._segment.ends[self._index - 1] if self._index else self._segment.start

    @property
    def at_segment_end(self) -> bool:
        """Whether the last line handed out is its segment's last."""
        return self._index == len(self._lines)

    def bad_between(self, first: int, end: int) -> tuple[int, _BadLine] | None:
        """The first bad line among lines ``first`` to ``end - 1`` (its number, what is
        wrong with it), if any is."""
        if not self.bad:
            return None
        found = [(n, self.bad.pop(n)) for n in range(first, end) if n in self.bad]
        return found[0] if found else None



class _Batcher:
    """Gathers records into :class:`RecordBatch` es of up to ``size``."""

    def __init__(self, before: int, size: int) -> None:
        self.size = size
        self._open = RecordBatch(before)

    def add(self, line: int, fields: list[str] | None, error: str | None,
            end: tuple[int, int], column: str | None = None) -> RecordBatch | None:
        """Add one record; returns the batch it filled, if it filled one."""
        batch = self._open
        if error is not None:
            batch.problems[len(batch.lines)] = error
            if column is not None:
                batch.problem_columns[len(batch.lines)] = column
        batch.lines.append(line)
        batch.rows.append(fields)
        batch.ends.append(end)
        return self.flush() if len(batch.lines) >= self.size else None

    def flush(self) -> RecordBatch | None:
        """The open batch, if it holds any record; a new one is opened after it."""
        batch = self._open
        if not batch.lines:
            return None
        self._open = RecordBatch(batch.before + len(batch.lines))
        return batch

    @property
    def before(self) -> int:
        """Records batched so far; the open batch must be empty (:meth:`flush` first)."""
        assert not self._open.lines, "flush() first"
        return self._open.before

    def skip(self, records: int) -> None:
        """Count ``records`` batched elsewhere (by :meth:`CsvFile._split_plainly`)."""
        self._open = RecordBatch(self.before + records)


class CsvFile:
    """A CSV file in the store, read from any :class:`Position` on.

    ``source`` gives the bytes from an offset; ``head`` is the file's first block (used to
    choose the line separator); ``has_header`` says whether the first record names columns.
    ``plain_split=False`` has :mod:`csv` read every line (the reference the plain split is
    tested against). ``delimiter`` is one of :data:`DELIMITERS`, or ``None`` to detect it
    from the header line (:func:`detect_delimiter`); ``delimiter_detected`` says which.
    Raises ``ValueError`` for another delimiter.
    """

    def __init__(
        self,
        source: BlockSource,
        *,
        encoding: str,
        head: bytes,
        has_header: bool = True,
        max_field_chars: int = 131_072,
        max_line_bytes: int = 1_048_576,
        filename: str = "<file>",
        plain_split: bool = True,
        delimiter: str | None = None,
    ) -> None:
        if delimiter is not None and delimiter not in DELIMITERS:
            raise ValueError(f"delimiter {delimiter!r} is not one of "
                             f"{', '.join(map(delimiter_name, DELIMITERS))}")
        self.delimiter_detected = delimiter is None
        self.delimiter = detect_delimiter(head) if delimiter is None else delimiter
        self._source = source
        self.plain_split = plain_split
        self.encoding = encoding
        self.has_header = has_header
        self.max_field_chars = max_field_chars
        self.max_line_bytes = max_line_bytes
        self.filename = filename
        self.separator = b"\r" if b"\n" not in head and b"\r" in head else b"\n"
        self._names: list[str] | None = None  # the header's, once read: errors name columns
        csv.field_size_limit(max_field_chars)

    def header(self) -> Header:
        """Read the header record; :class:`FileUnreadable` when the file has none."""
        if not self.has_header:
            return Header([], Position())
        for batch in self._read(Position(), None, size=1):
            record = batch.record(0)
            if record.fields is None:
                raise FileUnreadable(
                    f"{self.filename}, line {record.line}: the header cannot be read: "
                    f"{record.error}"
                )
            names = list(record.fields)
            if names and names[0].startswith("\ufeff"):
                names[0] = names[0][1:]
            while names and not names[-1].strip():
                names.pop()
            if not names:
                break
            self._names = names
            return Header(names, Position(record.end.offset, record.end.line, 0))
        raise FileUnreadable(f"{self.filename} is empty: it has no header line")

    def count(self, start: Position, source: BlockSource | None = None) -> int:
        """Data records from ``start`` to the end, counted at C speed (the progress total).

        Counts as :meth:`records` does (blank rows skipped, broken records counted once).
        While no double quote has been seen a record is a line, so lines are counted; from
        the first quote on, :mod:`csv` reads the rest. A row of blanks holding Unicode-only
        spaces (NBSP), a bare carriage return inside a line, an overlong line or
        undecodable bytes may make the count differ slightly, which affects the progress
        total alone. ``source`` reads the bytes instead of the file's own (another
        connection, say).
        """
        sep = self.separator
        delimiter = self.delimiter.encode("ascii")
        spaces = b" \t\v\f" + (b"" if delimiter == b"\t" else delimiter) + (
            b"\r" if sep == b"\n" else b"")
        # A blank line: a line end, then only spaces and delimiters up to the next line end.
        blank = re.compile(re.escape(sep) + b"[" + re.escape(spaces) + b"]*(?=" + re.escape(sep)
                           + b")")
        source = source or self._source
        total, offset, tail = 0, start.offset, b""
        for block in source(start.offset):
            data = tail + block if tail else block
            if b'"' in data:
                return total + self._count_with_csv(source, offset)
            cut = data.rfind(sep) + 1
            tail = data[cut:]
            lines = data[:cut]
            total += lines.count(sep) - len(blank.findall(sep + lines))
            offset += cut
        if tail.strip(spaces):
            total += 1
        return total

    def _count_with_csv(self, source: BlockSource, offset: int) -> int:
        raw = io.BufferedReader(_BlockStream(source(offset)), 1 << 16)
        text = io.TextIOWrapper(raw, encoding=self.encoding,
                                errors="replace", newline=None if self.separator == b"\r" else "")
        reader = csv.reader(text, strict=True, delimiter=self.delimiter)
        total = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return total
            except csv.Error:
                total += 1
                continue
            if "".join(fields).strip():
                total += 1

    def records(self, start: Position, width: int | None = None) -> Iterator[Record]:
        """Data records from ``start``; with ``width`` (header size) field counts are checked."""
        for batch in self.batches(start, width):
            for i in range(len(batch)):
                yield batch.record(i)

    def batches(self, start: Position, width: int | None = None,
                size: int = 512) -> Iterator[RecordBatch]:
        """The data records from ``start`` in batches of up to ``size``; with ``width``
        (header size) field counts are checked."""
        return self._read(start, width, size=size)

    def _read(self, start: Position, width: int | None, *, size: int) -> Iterator[RecordBatch]:
        feed = _LineFeed(self._source(start.offset), self.encoding, self.separator,
                         self.max_line_bytes, start, self.delimiter)
        segments = feed.segments()
        batcher = _Batcher(start.record, size)
        while (segment := next(segments, None)) is not None:
            if width is not None and self._plain(segment):
                if (batch := batcher.flush()) is not None:
                    yield batch
                yield from self._split_plainly(segment, width, batcher)
            else:
                yield from self._read_with_csv(feed, segment, segments, width, batcher)
        if (batch := batcher.flush()) is not None:
            yield batch

    def _plain(self, segment: _Segment) -> bool:
        """Whether :mod:`csv` would read each line of ``segment`` as one record of fields
        split at every delimiter: no quote, no line end but the file's, no line over the
        field limit, every line decoded."""
        text = segment.text
        return (self.plain_split and text is not None and self.separator == b"\n"
                and segment.longest <= self.max_field_chars and '"' not in text
                and ("\r" not in text or text.count("\r") == text.count("\r\n")))

    def _split_plainly(self, segment: _Segment, width: int,
                       batcher: _Batcher) -> Iterator[RecordBatch]:
        """The records of a :meth:`_plain` segment, split at the delimiter by C code, a batch at a
        time; the batches hold their fields column by column where every row has the same
        width."""
        assert segment.text is not None
        body = segment.text.replace("\r\n", "\n") if "\r" in segment.text else segment.text
        lines = body.split("\n")
        lines.pop()  # the empty piece after the last line end
        numbers: Sequence[int] = range(segment.first_line, segment.first_line + len(lines))
        ends = segment.ends
        if _blank_line(self.delimiter).search("\n" + body):
            keep = [i for i, line in enumerate(lines)
                    if line.replace(self.delimiter, "").strip()]
            lines = [lines[i] for i in keep]
            numbers = [numbers[i] for i in keep]
            ends = [ends[i] for i in keep]
        for at in range(0, len(lines), batcher.size):
            stop = at + batcher.size
            after = list(zip(ends[at:stop], map(add, numbers[at:stop], repeat(1)), strict=True))
            batch = _split_plain_lines(batcher.before, lines[at:stop], list(numbers[at:stop]),
                                     after, width, self.delimiter)
            batcher.skip(len(batch))
            yield batch

    def _read_with_csv(self, feed: _LineFeed, segment: _Segment, segments: Iterator[_Segment],
                       width: int | None, batcher: _Batcher) -> Iterator[RecordBatch]:
        """Records read by :mod:`csv` from ``segment`` on, until one ends a segment."""
        pump = _Pump(feed, segment, segments)
        reader = csv.reader(pump, strict=True, delimiter=self.delimiter)
        while True:
            first, start = pump.line, pump.offset
            pump.mark()
            error = column = None
            try:
                fields: list[str] | None = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                fields, error = None, _csv_message(exc, self.max_field_chars)
                column = self._error_column(exc, pump.record_text())
                if column is None:
                    error += f" (the record starts at byte {start})"
            bad = pump.bad_between(first, pump.line)
            if bad is not None:
                number, line = bad
                fields, error, column = None, line.reason, None
                if line.reason == feed.overlong:
                    if number == first and line.column is not None:
                        column = self._label(line.column)
                    else:
                        error += f" (it starts at byte {line.offset})"
            if fields is not None and not (fields and (fields[0].strip()
                                                       or "".join(fields).strip())):
                pass  # a blank line or a row of empty cells; the cursor moves past it
            else:
                if fields is not None and width is not None and len(fields) != width:
                    fields, error = _fit_width(fields, width)
                if (batch := batcher.add(first, fields, error, (pump.offset, pump.line),
                                         column)):
                    yield batch
            if pump.at_segment_end:
                return


    def _label(self, index: int) -> str:
        """Column ``index`` (0-based) as row errors name it: its header, or ``#N``."""
        names = self._names
        if names is not None and index < len(names) and names[index].strip():
            return names[index].strip()
        return f"#{index + 1}"

    def _error_column(self, exc: csv.Error, text: str) -> str | None:
        """The column a :mod:`csv` error is about, read from the record's ``text``."""
        lengths = _field_lengths(text, self.delimiter)
        message = str(exc)
        if "field larger than field limit" in message:
            over = [i for i, n in enumerate(lengths) if n > self.max_field_chars]
            return self._label(over[0]) if over else None
        if "unexpected end of data" in message and lengths:
            return self._label(len(lengths) - 1)
        return None


def _field_lengths(text: str, delimiter: str = ",") -> list[int]:
    """The length of each field of the record ``text`` as :mod:`csv` reads it (RFC 4180:
    doubled quotes count once); the last field may be an unclosed quoted one."""
    lengths: list[int] = []
    at, size = 0, len(text)
    while True:
        length = 0
        if text.startswith('"', at):
            at += 1
            while True:
                quote = text.find('"', at)
                if quote < 0:  # never closed: the rest of the text is the field
                    lengths.append(length + size - at)
                    return lengths
                length += quote - at
                if text.startswith('"', quote + 1):
                    length += 1
                    at = quote + 2
                    continue
                at = quote + 1
                break
        end = _field_end(delimiter).search(text, at)
        stop = end.start() if end else size
        length += stop - at
        lengths.append(length)
        if end is None or end.group() != delimiter:
            return lengths
        at = stop + 1


_FIELD_ENDS = {d: re.compile("[" + re.escape(d) + r"\r\n]") for d in DELIMITERS}
_BLANK_LINES = {d: re.compile(r"\n(?=(?:[^\S\n]|" + re.escape(d) + r")*\n)") for d in DELIMITERS}


def _field_end(delimiter: str) -> re.Pattern[str]:
    """Where a field ends: its delimiter or a line end."""
    return _FIELD_ENDS[delimiter]


def _blank_line(delimiter: str) -> re.Pattern[str]:
    """After a line end, a line of nothing but spaces and delimiters (search
    ``"\\n" + text``)."""
    return _BLANK_LINES[delimiter]


def _split_plain_lines(before: int, lines: list[str], numbers: list[int],
                     ends: list[tuple[int, int]], width: int,
                     delimiter: str = ",") -> RecordBatch:
    """A batch of plain ``lines`` (no quote, no line end) split at the delimiter."""
    counts = set(map(str.count, lines, repeat(delimiter)))
    if len(counts) == 1 and (fields := counts.pop() + 1) >= width:
        flat = delimiter.join(lines).split(delimiter)
        if not any("".join(flat[i::fields]).strip() for i in range(width, fields)):
            columns = [flat[i::fields] for i in range(width)]
            return RecordBatch(before, numbers, ends, columns=columns)
    rows: list[list[str] | None] = [line.split(delimiter) for line in lines]
    problems: dict[int, str] = {}
    for i, row in enumerate(rows):
        if row is not None and len(row) != width:
            rows[i], error = _fit_width(row, width)
            if error is not None:
                problems[i] = error
    return RecordBatch(before, numbers, ends, rows, problems)


def _csv_message(exc: csv.Error, limit: int) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a field is longer than the limit of {limit} characters"
    if "unexpected end of data" in text:
        return "a quoted field is not closed before the end of the file"
    return f"malformed CSV: {text}"


def _fit_width(fields: list[str], width: int) -> tuple[list[str] | None, str | None]:
    """A row of the wrong width cut to ``width`` (only empty cells beyond it), or its error."""
    if len(fields) > width and not "".join(fields[width:]).strip():
        return fields[:width], None
    return None, f"row has {len(fields)} fields but the header has {width}"


class _BlockStream(io.RawIOBase):
    """A readable raw stream over an iterator of byte blocks."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._blocks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
