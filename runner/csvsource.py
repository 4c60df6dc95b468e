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

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

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
class _LineFeed:
    """Feeds decoded physical lines to :mod:`csv`, counting what was consumed."""

    source: Iterator[bytes]
    encoding: str
    separator: bytes
    max_line_bytes: int
    offset: int
    line: int
    bad_lines: dict[int, str] = field(default_factory=dict)
    _oversize_pending: int = 0

    def lines(self) -> Iterator[str]:
        pending = bytearray()
        oversized = False
        sep = self.separator
        for block in self.source:
            start = 0
            while True:
                end = block.find(sep, start)
                if end < 0:
                    if not oversized:
                        pending += block[start:]
                        if len(pending) > self.max_line_bytes:
                            oversized = True
                            self._oversize_pending = len(pending)
                            pending.clear()
                    else:
                        self._oversize_pending += len(block) - start
                    break
                if oversized:
                    length = self._oversize_pending + end + 1 - start
                    oversized = False
                    yield self._emit_oversized(length)
                else:
                    if pending:
                        pending += block[start : end + 1]
                        raw = bytes(pending)
                        pending.clear()
                    else:
                        raw = block[start : end + 1]
                    yield self._emit(raw)
                start = end + 1
        if oversized:
            yield self._emit_oversized(self._oversize_pending)
        elif pending:
            yield self._emit(bytes(pending))

    def _emit(self, raw: bytes) -> str:
        if len(raw) > self.max_line_bytes:
            return self._emit_oversized(len(raw))
        self.offset += len(raw)
        self.line += 1
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            self.bad_lines[self.line - 1] = (
                f"bytes at column {exc.start + 1} are not valid {self.encoding}"
            )
            return "\n"

    def _emit_oversized(self, length: int) -> str:
        self.offset += length
        self.line += 1
        self.bad_lines[self.line - 1] = (
            f"line is longer than the limit of {self.max_line_bytes} bytes"
        )
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
        for record in self._read(Position(), skip_blank=True):
            if record.error is not None or record.fields is None:
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

        Counts as :meth:`records` does (blank rows skipped, broken records counted once);
        only a file with overlong lines or undecodable bytes may count slightly differently,
        which affects the progress total alone.
        """
        raw = io.BufferedReader(_BlockStream(self._source(start.offset)), 1 << 16)
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
            if any(f.strip() for f in fields):
                total += 1

    def records(self, start: Position, width: int | None = None) -> Iterator[Record]:
        """Data records from ``start``; with ``width`` (header size) field counts are checked."""
        for record in self._read(start, skip_blank=True):
            if record.fields is not None and width is not None:
                record = _check_width(record, width)
            yield record

    def _read(self, start: Position, *, skip_blank: bool) -> Iterator[Record]:
        feed = _LineFeed(
            self._source(start.offset), self.encoding, self.separator, self.max_line_bytes,
            start.offset, start.line,
        )
        reader = csv.reader(feed.lines(), strict=True)
        count = start.record
        while True:
            first_line = feed.line
            try:
                fields: list[str] | None = next(reader)
                error = None
            except StopIteration:
                return
            except csv.Error as exc:
                fields, error = None, _csv_message(exc, self.max_field_chars)
            end_line = feed.line
            bad = [feed.bad_lines.pop(n) for n in range(first_line, end_line)
                   if n in feed.bad_lines]
            if bad:
                fields, error = None, bad[0]
            elif skip_blank and fields is not None and not any(f.strip() for f in fields):
                continue  # a blank line or a row of empty cells; the cursor moves past it
            count += 1
            yield Record(first_line, fields, error, Position(feed.offset, feed.line, count))


def _csv_message(exc: csv.Error, limit: int) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a field is longer than the limit of {limit} characters"
    if "unexpected end of data" in text:
        return "a quoted field is not closed before the end of the file"
    return f"malformed CSV: {text}"


def _check_width(record: Record, width: int) -> Record:
    fields = record.fields
    assert fields is not None
    if len(fields) == width:
        return record
    if len(fields) > width and not any(f.strip() for f in fields[width:]):
        return Record(record.line, fields[:width], None, record.end)
    return Record(
        record.line, None,
        f"row has {len(fields)} fields but the header has {width}", record.end,
    )


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
