"""The file store: uploaded files kept in PostgreSQL in fixed-size blocks.

Files stream in (:func:`store`) and out (:func:`read_blocks`) one block at a time, so memory
stays bounded by the block size whatever the file's size. Each file records its size,
SHA-256 and encoding. The API stores uploads with the same function.

Encodings (:mod:`longtask.textencoding` tells them as the bytes stream in): a file
valid as UTF-8 (with or without BOM) is stored as it is. UTF-16 and UTF-32 files (with a
byte-order mark, as spreadsheets' "Unicode text" exports have; UTF-16 also without one)
are transcoded to UTF-8 on the way in, so every stored file is ASCII-compatible and can be
split into lines on ``\\n`` bytes. Files in a legacy code page (cp1252, cp1250, cp1251,
cp1254, cp1256, Shift_JIS, GB18030, ...) are stored as they are and named by detection,
which refuses a guess it is not sure of; the uploader may name the encoding instead.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import struct
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import psycopg2.extensions

from longtask import storage
from longtask.errors import FileUnreadable, LongTaskError
from longtask.textencoding import EncodingFacts, EncodingSniffer, facts_of

BLOCK_SIZE = 1 << 20  # 1 MiB: large enough for fast COPY-free streaming, small in memory

Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor
ConnectionSource = Callable[[], AbstractContextManager[Connection]]
"""``connection()``: a context lending one connection for one statement (a pool's)."""

log = logging.getLogger("longtask.filestore")


class Queries:
    """The statements that write the store."""

    INSERT_FILE = (
        "INSERT INTO longtask.files (id, organization, filename, content_type, block_size, "
        "created_by) VALUES (%s, %s, %s, %s, %s, %s)"
    )
    INSERT_BLOCK = "INSERT INTO longtask.file_blocks (file_id, seq, data) VALUES (%s, %s, %s)"
    COMPLETE_FILE = (
        "UPDATE longtask.files SET size_bytes = %s, sha256 = %s, encoding = %s, "
        "source_encoding = %s, complete = true WHERE id = %s"
    )
    SET_EXPIRY = (
        "UPDATE longtask.files SET expires_at = now() + make_interval(secs => %s) WHERE id = %s"
    )
    DELETE_FILE = "DELETE FROM longtask.files WHERE id = %s AND NOT complete"
    # Uploads cut off by a killed process; an honest upload of 1 GiB at the API's lowest
    # accepted rate (64 KiB/s) takes under five hours.
    DELETE_ABANDONED = (
        "DELETE FROM longtask.files WHERE NOT complete AND created_at < now() - interval '1 day'"
    )


@dataclass(frozen=True)
class FileInfo:
    """A stored file: ``size_bytes`` and ``sha256`` are of the stored (UTF-8 or original) bytes.

    ``encoding`` decodes the stored bytes; ``source_encoding`` says what was uploaded and
    how its encoding was found (``cp1252 (detected, confidence 0.97)``, see
    :attr:`encoding_facts`).
    """

    id: uuid.UUID
    organization: str
    filename: str
    size_bytes: int
    sha256: str
    encoding: str
    source_encoding: str
    block_size: int

    @property
    def encoding_facts(self) -> EncodingFacts:
        """How the encoding was found, and the detection's confidence (0 to 1, or None)."""
        return facts_of(self.source_encoding)


class FileNotFound(LookupError):
    """No complete file with this id (for this organization) is in the store."""


def _blocks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    while True:
        block = stream.read(size)
        if not block:
            return
        yield block


def _rechunk(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Regroup a byte stream into blocks of exactly ``size`` bytes (the last may be short)."""
    pending = bytearray()
    for piece in pieces:
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def _transcode(blocks: Iterator[bytes], encoding: str, filename: str) -> Iterator[bytes]:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    done = 0
    try:
        for block in blocks:
            yield decoder.decode(block).encode("utf-8")
            done += len(block)
        yield decoder.decode(b"", final=True).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileUnreadable(f"{filename} is read as {encoding.upper()}, but byte "
                             f"{done + exc.start} is not valid {encoding.upper()}: "
                             f"{exc.reason}") from exc


def _read_head(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes from the start of ``stream`` (fewer only at its end)."""
    head = bytearray()
    while len(head) < size:
        piece = stream.read(size - len(head))
        if not piece:
            break
        head += piece
    return bytes(head)


class _Sink(Protocol):
    """Where :func:`_write` puts a file: its row, its blocks, its end (or its removal)."""

    def begin(self, row: tuple[Any, ...]) -> None: ...
    def block(self, file_id: uuid.UUID, seq: int, data: bytes) -> None: ...
    def usage(self, organization: str, default_quota: int) -> storage.Usage: ...
    def finish(self, completion: _Completion) -> None: ...
    def abort(self, file_id: uuid.UUID) -> None: ...


@dataclass(frozen=True)
class _Completion:
    """The last statements of a stored file, run in one transaction: the quota checked
    under the organization's usage lock (``quota``: the default quota, None for none), the
    file marked complete (``values`` for :attr:`Queries.COMPLETE_FILE`), its expiry set."""

    organization: str
    filename: str
    size: int
    values: tuple[Any, ...]
    quota: int | None
    expires_in_seconds: float | None

    def run(self, cur: Cursor) -> None:
        if self.quota is not None:
            storage.check(cur, self.organization, self.size, self.quota,
                          f"file {self.filename!r}")
        cur.execute(Queries.COMPLETE_FILE, self.values)
        if self.expires_in_seconds is not None:
            cur.execute(Queries.SET_EXPIRY, (self.expires_in_seconds, self.values[-1]))


class _OneTransaction:
    """Everything in one transaction on ``conn``, committed at the end."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def begin(self, row: tuple[Any, ...]) -> None:
        with self._conn.cursor() as cur:
            cur.execute(Queries.INSERT_FILE, row)

    def block(self, file_id: uuid.UUID, seq: int, data: bytes) -> None:
        with self._conn.cursor() as cur:
            cur.execute(Queries.INSERT_BLOCK, (file_id, seq, psycopg2.Binary(data)))

    def usage(self, organization: str, default_quota: int) -> storage.Usage:
        return storage.usage(self._conn, organization, default_quota)

    def finish(self, completion: _Completion) -> None:
        with self._conn.cursor() as cur:
            completion.run(cur)
        self._conn.commit()

    def abort(self, file_id: uuid.UUID) -> None:
        self._conn.rollback()


class _BlockTransactions:
    """Each statement in a short transaction of its own, on a connection taken for it
    alone: nothing is held while the next block comes from the network. The file is
    invisible (``complete`` false) until :meth:`finish`; :meth:`abort` deletes it."""

    def __init__(self, connection: ConnectionSource) -> None:
        self._connection = connection
        self._begun = False

    def _run(self, statement: str, args: tuple[Any, ...]) -> None:
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute(statement, args)
            if not conn.autocommit:
                conn.commit()

    def begin(self, row: tuple[Any, ...]) -> None:
        self._run(Queries.DELETE_ABANDONED, ())
        self._run(Queries.INSERT_FILE, row)
        self._begun = True

    def block(self, file_id: uuid.UUID, seq: int, data: bytes) -> None:
        self._run(Queries.INSERT_BLOCK, (file_id, seq, psycopg2.Binary(data)))

    def usage(self, organization: str, default_quota: int) -> storage.Usage:
        with self._connection() as conn:
            found = storage.usage(conn, organization, default_quota)
            if not conn.autocommit:
                conn.commit()
        return found

    def finish(self, completion: _Completion) -> None:
        # One transaction: the usage lock is held from the quota's check to the commit.
        with self._connection() as conn:
            conn.autocommit = False
            try:
                with conn.cursor() as cur:
                    completion.run(cur)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def abort(self, file_id: uuid.UUID) -> None:
        if not self._begun:
            return
        try:
            self._run(Queries.DELETE_FILE, (file_id,))
        except (psycopg2.Error, LongTaskError) as exc:  # the sweep in begin() removes it
            log.warning("file_abort_failed", extra={"file": str(file_id), "error": str(exc)})


def store(
    conn: Connection,
    stream: BinaryIO,
    *,
    organization: str,
    filename: str,
    content_type: str | None = None,
    created_by: str | None = None,
    max_bytes: int | None = None,
    block_size: int = BLOCK_SIZE,
    encoding: str | None = None,
    quota_bytes: int | None = None,
    expires_in_seconds: float | None = None,
) -> FileInfo:
    """Stream ``stream`` into the store in one transaction (committed on return).

    ``encoding`` is one the uploader names (any Python codec whose ASCII bytes are ASCII,
    or UTF-16/32); without it the encoding is told from the bytes
    (:class:`~longtask.textencoding.EncodingSniffer`). Raises
    :class:`FileUnreadable` for an empty file, one over ``max_bytes`` (bytes), one that is
    not valid in the encoding named, or one whose encoding cannot be told for sure
    (:class:`~longtask.textencoding.EncodingUncertain`, with the likeliest
    readings); nothing is left in the store then.

    ``quota_bytes`` is the organization's default quota (:mod:`longtask.storage`): the
    file is refused with :class:`~longtask.storage.QuotaExceeded` as soon as it outgrows
    the room its organization had when it started, and checked again under the
    organization's usage lock in the transaction that completes it, so two uploads racing
    cannot both pass. ``expires_in_seconds``: the file is removed that long after its
    upload unless a task uses it first (None: no expiry set).
    """
    return _write(_OneTransaction(conn), stream, organization=organization,
                  filename=filename, content_type=content_type, created_by=created_by,
                  max_bytes=max_bytes, block_size=block_size, encoding=encoding,
                  quota_bytes=quota_bytes, expires_in_seconds=expires_in_seconds)


def store_in_blocks(
    connection: ConnectionSource,
    stream: BinaryIO,
    *,
    organization: str,
    filename: str,
    content_type: str | None = None,
    created_by: str | None = None,
    max_bytes: int | None = None,
    block_size: int = BLOCK_SIZE,
    encoding: str | None = None,
    quota_bytes: int | None = None,
    expires_in_seconds: float | None = None,
) -> FileInfo:
    """:func:`store` for a stream that waits on a slow sender (an upload): each block is
    read whole from ``stream`` first, then written in a short transaction on a connection
    ``connection()`` lends for it alone, so no connection or transaction is held while
    the network is waited on.

    The file stays invisible (``complete`` false: :func:`info` does not find it) until its
    last statement marks it complete; a failure deletes what was written, and files left
    incomplete for more than a day (a process killed mid-upload) are deleted when the next
    upload begins. Same arguments and errors as :func:`store`.
    """
    return _write(_BlockTransactions(connection), stream, organization=organization,
                  filename=filename, content_type=content_type, created_by=created_by,
                  max_bytes=max_bytes, block_size=block_size, encoding=encoding,
                  quota_bytes=quota_bytes, expires_in_seconds=expires_in_seconds)


def _write(
    sink: _Sink,
    stream: BinaryIO,
    *,
    organization: str,
    filename: str,
    content_type: str | None,
    created_by: str | None,
    max_bytes: int | None,
    block_size: int,
    encoding: str | None,
    quota_bytes: int | None,
    expires_in_seconds: float | None,
) -> FileInfo:
    file_id = uuid.uuid4()
    sniffer = EncodingSniffer(filename, encoding)
    head = _read_head(stream, EncodingSniffer.HEAD_BYTES)
    wide = sniffer.start(head)
    raw = _prepend(head, _blocks(stream, block_size))
    pieces = _transcode(raw, wide, filename) if wide is not None else raw

    digest = hashlib.sha256()
    size = 0
    begun = False
    try:
        if quota_bytes is not None:
            pieces = _within_room(sink, pieces, organization, quota_bytes, filename)
        for seq, block in enumerate(_rechunk(pieces, block_size)):
            size += len(block)
            if max_bytes is not None and size > max_bytes:
                raise FileUnreadable(
                    f"file {filename!r} is larger than the limit of {max_bytes} bytes"
                )
            if not begun:
                sink.begin((file_id, organization, filename, content_type, block_size,
                            created_by))
                begun = True
            digest.update(block)
            sniffer.feed(block)
            sink.block(file_id, seq, block)
        if size == 0:
            raise FileUnreadable(f"file {filename!r} is empty")
        decision = sniffer.finish()
        sink.finish(_Completion(
            organization, filename, size,
            (size, digest.hexdigest(), decision.encoding, decision.source_encoding, file_id),
            quota_bytes, expires_in_seconds))
    except BaseException:
        sink.abort(file_id)
        raise
    return FileInfo(file_id, organization, filename, size, digest.hexdigest(),
                    decision.encoding, decision.source_encoding, block_size)


def _within_room(sink: _Sink, pieces: Iterator[bytes], organization: str,
                 quota_bytes: int, filename: str) -> Iterator[bytes]:
    """``pieces``, refused with :class:`~longtask.storage.QuotaExceeded` (``partial``: the
    file is at least that large) as soon as more arrived than the organization has room
    for. The room is read without the usage lock, so a slow client holds no lock; it is
    read again when crossed, as other writers may have freed some."""
    room = sink.usage(organization, quota_bytes).room
    arrived = 0
    for piece in pieces:
        arrived += len(piece)
        if arrived > room:
            now = sink.usage(organization, quota_bytes)
            if arrived > now.room:
                raise storage.QuotaExceeded(organization, now.used, now.quota, arrived,
                                            f"file {filename!r}", partial=True)
            room = now.room
        yield piece


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def info(conn: Connection, file_id: uuid.UUID, organization: str | None = None) -> FileInfo:
    """The stored file's metadata; :class:`FileNotFound` when absent, incomplete or removed
    by the retention."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, organization, filename, size_bytes, sha256, encoding, source_encoding, "
            "block_size FROM longtask.files WHERE id = %s AND complete AND removed_at IS NULL",
            (file_id,),
        )
        row = cur.fetchone()
    if row is None or (organization is not None and row[1] != organization):
        raise FileNotFound(f"no file {file_id} in the store"
                           + (f" for organization {organization!r}" if organization else ""))
    return FileInfo(*row)


def read_blocks(
    conn: Connection, file: FileInfo, start: int = 0
) -> Iterator[bytes]:
    """Yield the file's bytes from byte offset ``start``, one block (at most) at a time.

    Each block is read in its own short statement, so a reader never holds more than one
    block in memory; ``conn`` should be in autocommit mode so no transaction stays open
    between blocks. Blocks travel in ``COPY``'s binary format: raw bytes, where a bytea
    result would travel hex-encoded at twice the size and cost the server an encoding.
    """
    seq, skip = divmod(start, file.block_size)
    sink = io.BytesIO()
    while True:
        sink.seek(0)
        sink.truncate()
        with conn.cursor() as cur:
            cur.copy_expert(
                cur.mogrify("COPY (SELECT data FROM longtask.file_blocks WHERE file_id = %s "
                            "AND seq = %s) TO STDOUT (FORMAT binary)", (file.id, seq)).decode(),
                sink,
            )
        with sink.getbuffer() as view:
            data = _binary_copy_value(view)
        if data is None:
            return
        if skip:
            data = data[skip:]
            skip = 0
        if data:
            yield data
        seq += 1


COPY_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
"""The first bytes of ``COPY``'s binary format (PostgreSQL documentation, "COPY")."""
_COPY_HEADER = struct.Struct("!11sII")  # signature, flags, header extension length
_COPY_FIELD = struct.Struct("!hi")  # fields in the tuple, length of the first


def _binary_copy_value(buf: memoryview) -> bytes | None:
    """The one bytea value of a one-row, one-column binary COPY (None: no row).

    Format: PostgreSQL documentation, "COPY", section "Binary Format".
    """
    signature, _flags, extension = _COPY_HEADER.unpack_from(buf)
    if signature != COPY_BINARY_SIGNATURE:
        raise RuntimeError("the server sent COPY data that is not in the binary format")
    at = _COPY_HEADER.size + extension
    fields, length = _COPY_FIELD.unpack_from(buf, at) if len(buf) >= at + 6 else (-1, 0)
    if fields == -1:  # the trailer: no row
        return None
    if fields != 1 or length < 0:
        raise RuntimeError("the file block query returned an unexpected shape")
    at += _COPY_FIELD.size
    return bytes(buf[at:at + length])
