"""Resumable CSV reading with byte-exact positions, bounded memory and row-level errors.

A :class:`Position` (byte offset, physical line, records read) is the cursor a checkpoint
stores; :meth:`CsvFile.records` resumes from one without re-reading what came before.

How the file is read (the rules people who make these files expect, RFC 4180 where it
speaks):

- Bytes are split into physical lines on ``\\n`` (``\\r\\n`` and ``\\n`` line ends); a file
  with no ``\\n`` at all but ``\\r`` (old Mac) is split on ``\\r``. Every stored file is
  ASCII-compatible (see :mod:`longtask.runner.filestore`), so splitting bytes is exact.
- Each line is decoded in the file's encoding; a UTF-8 BOM before the header is dropped.
- Python's :mod:`csv` joins lines into records, so quoted fields may hold commas, quotes
  (``""``) and line breaks. A record's line number is that of its first physical line.
- A physical line longer than ``max_line_bytes`` or a field longer than ``max_field_chars``
  is a row error; memory stays bounded whatever the file holds.
- Blank lines and rows whose fields are all empty (spreadsheets leave them) are skipped.
- Fields beyond the header's width are allowed only when empty (spreadsheets' trailing
  commas); a row with fewer fields, or extra non-empty ones, is a row error.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from longtask.runner.errors import FileUnreadable

BlockSource = Callable[[int], Iterator[bytes]]
"""``source(offset)`` yields the file's bytes from byte ``offset`` on, in blocks."""


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
    """One data record: its first ``line``, its ``fields`` or the ``error`` that spoiled it."""

    line: int
    fields: list[str] | None
    error: str | None
    end: Position


@dataclass(frozen=True)
class Header:
    """The header record: raw ``names`` (BOM and trailing empty names dropped)."""

    names: list[str]
    end: Position


@dataclass
class RecordBatch:
    """Consecutive data records, read in one go (what the runner's reading thread parses).

    Record ``i`` starts on physical line ``lines[i]``; ``rows[i]`` holds its fields, or None
    when it could not be read, ``problems[i]`` then saying why; ``ends[i]`` is the
    ``(offset, line)`` right after it. ``before`` counts the data records read before the
    batch, so record ``i`` is data record number ``before + i + 1``.
    """

    before: int
    lines: list[int] = field(default_factory=list)
    rows: list[list[str] | None] = field(default_factory=list)
    problems: dict[int, str] = field(default_factory=dict)
    ends: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lines)

    def end(self, i: int) -> Position:
        """The cursor right after record ``i`` (0-based, in this batch)."""
        offset, line = self.ends[i]
        return Position(offset, line, self.before + i + 1)

    def record(self, i: int) -> Record:
        """Record ``i`` as a :class:`Record`."""
        return Record(self.lines[i], self.rows[i], self.problems.get(i), self.end(i))


class _LineFeed:
    """Feeds decoded physical lines to :mod:`csv` and knows the byte offset after each.

    Bytes are cut into segments of whole lines (a block at a time); a segment is decoded
    and split by C code in one go. Only a segment holding an undecodable or overlong line
    is taken line by line; such a line is fed as an empty line and noted in ``bad_lines``
    (by line number) for the record it belongs to.
    """

    def __init__(self, source: Iterator[bytes], encoding: str, separator: bytes,
                 max_line_bytes: int, start: Position) -> None:
        self._source = source
        self._encoding = encoding
        self._sep = separator
        self._text_sep = separator.decode("ascii")
        sep = re.escape(separator)
        self._raw_line = re.compile(b"[^" + sep + b"]*" + sep)
        self._text_line = re.compile("[^" + re.escape(self._text_sep) + "]*"
                                     + re.escape(self._text_sep))
        self._max = max_line_bytes
        self._first_line = start.line
        self._offset = start.offset  # byte offset where the current segment starts
        self._pulled = 0  # lines handed out before the current segment
        self._ends: list[int] = []  # byte offset after each line of the current segment
        self.bad_lines: dict[int, str] = {}

    def after(self, pulled: int) -> tuple[int, int]:
        """(byte offset, line number) right after the first ``pulled`` lines handed out.

        Valid for any line of the current segment, which holds the last line handed out.
        """
        index = pulled - self._pulled - 1
        offset = self._ends[index] if index >= 0 else self._offset
        return offset, self._first_line + pulled

    def lines(self) -> Iterator[str]:
        """The decoded lines, each with its line end (the last may have none)."""
        sep, limit = self._sep, self._max
        tail = b""
        skipped = -1  # bytes of an overlong line being skipped; -1: not skipping
        for block in self._source:
            if skipped >= 0:
                end = block.find(sep)
                if end < 0:
                    skipped += len(block)
                    continue
                yield from self._segment_of_bad_line(skipped + end + 1)
                skipped = -1
                block = block[end + 1:]
            data = tail + block if tail else block
            cut = data.rfind(sep) + 1
            tail = data[cut:]
            if cut:
                yield from self._segment(data[:cut] if tail else data)
            if len(tail) > limit:
                skipped, tail = len(tail), b""
        if skipped >= 0:
            yield from self._segment_of_bad_line(skipped)
        elif tail:
            yield from self._segment(tail + sep, unterminated=True)

    def _begin(self, lengths: Iterable[int]) -> None:
        self._pulled += len(self._ends)
        self._offset = self._ends[-1] if self._ends else self._offset
        self._ends = list(accumulate(lengths, initial=self._offset))[1:]

    def _segment(self, seg: bytes, *, unterminated: bool = False) -> Iterator[str]:
        raw = self._raw_line.findall(seg)
        lengths = list(map(len, raw))
        if unterminated:
            lengths[-1] -= len(self._sep)  # the separator added to read the last line
        lines: list[str] = []
        if max(lengths) <= self._max:
            with contextlib.suppress(UnicodeDecodeError):
                lines = self._text_line.findall(seg.decode(self._encoding))
        self._begin(lengths)
        if len(lines) == len(raw):
            yield from lines
            return
        for number, (line, length) in enumerate(zip(raw, lengths, strict=True),
                                                self._first_line + self._pulled):
            if length > self._max:
                yield self._bad(number, f"line is longer than the limit of {self._max} bytes")
                continue
            try:
                yield line.decode(self._encoding)
            except UnicodeDecodeError as exc:
                yield self._bad(number, f"bytes at column {exc.start + 1} are not valid "
                                        f"{self._encoding}")

    def _segment_of_bad_line(self, length: int) -> Iterator[str]:
        self._begin([length])
        yield self._bad(self._first_line + self._pulled,
                        f"line is longer than the limit of {self._max} bytes")

    def _bad(self, number: int, reason: str) -> str:
        self.bad_lines[number] = reason
        return "\n"


class CsvFile:
    """A CSV file in the store, read from any :class:`Position` on.

    ``source`` gives the bytes from an offset; ``head`` is the file's first block (used to
    choose the line separator); ``has_header`` says whether the first record names columns.
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
    ) -> None:
        self._source = source
        self.encoding = encoding
        self.has_header = has_header
        self.max_field_chars = max_field_chars
        self.max_line_bytes = max_line_bytes
        self.filename = filename
        self.separator = b"\r" if b"\n" not in head and b"\r" in head else b"\n"
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
            return Header(names, Position(record.end.offset, record.end.line, 0))
        raise FileUnreadable(f"{self.filename} is empty: it has no header line")

    def count(self, start: Position) -> int:
        """Data records from ``start`` to the end, counted at C speed (the progress total).

        Counts as :meth:`records` does (blank rows skipped, broken records counted once).
        While no double quote has been seen a record is a line, so lines are counted; from
        the first quote on, :mod:`csv` reads the rest. A row of blanks holding Unicode-only
        spaces (NBSP), an overlong line or undecodable bytes may make the count differ
        slightly, which affects the progress total alone.
        """
        sep = self.separator
        spaces = b" \t\v\f," + (b"\r" if sep == b"\n" else b"")
        # A blank line: a line end, then only spaces and commas up to the next line end.
        blank = re.compile(re.escape(sep) + b"[" + re.escape(spaces) + b"]*(?=" + re.escape(sep)
                           + b")")
        total, offset, tail = 0, start.offset, b""
        for block in self._source(start.offset):
            data = tail + block if tail else block
            if b'"' in data:
                return total + self._count_with_csv(offset)
            cut = data.rfind(sep) + 1
            tail = data[cut:]
            lines = data[:cut]
            total += lines.count(sep) - len(blank.findall(sep + lines))
            offset += cut
        if tail.strip(spaces):
            total += 1
        return total

    def _count_with_csv(self, offset: int) -> int:
        raw = io.BufferedReader(_BlockStream(self._source(offset)), 1 << 16)
        text = io.TextIOWrapper(raw, encoding=self.encoding,
                                errors="replace", newline=None if self.separator == b"\r" else "")
        reader = csv.reader(text, strict=True)
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
        """The data records from ``start`` in batches of up to ``size`` (the last may be
        shorter); with ``width`` (header size) field counts are checked."""
        return self._read(start, width, size=size)

    def _read(self, start: Position, width: int | None, *, size: int) -> Iterator[RecordBatch]:
        feed = _LineFeed(self._source(start.offset), self.encoding, self.separator,
                         self.max_line_bytes, start)
        reader = csv.reader(feed.lines(), strict=True)
        bad_lines = feed.bad_lines
        batch = RecordBatch(start.record)
        lines, rows, ends = batch.lines, batch.rows, batch.ends
        pulled = 0  # lines the csv reader had taken when the previous record ended
        while True:
            error = None
            try:
                fields: list[str] | None = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                fields, error = None, _csv_message(exc, self.max_field_chars)
            first, pulled = pulled, reader.line_num
            if bad_lines:
                bad = [bad_lines.pop(n) for n in range(start.line + first, start.line + pulled)
                       if n in bad_lines]
                if bad:
                    fields, error = None, bad[0]
            if fields is not None:
                if not (fields and (fields[0].strip() or "".join(fields).strip())):
                    continue  # a blank line or a row of empty cells; the cursor moves past it
                if width is not None and len(fields) != width:
                    fields, error = _fit_width(fields, width)
            if error is not None:
                batch.problems[len(rows)] = error
            lines.append(start.line + first)
            rows.append(fields)
            ends.append(feed.after(pulled))
            if len(rows) >= size:
                yield batch
                batch = RecordBatch(batch.before + len(rows))
                lines, rows, ends = batch.lines, batch.rows, batch.ends
        if rows:
            yield batch


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
