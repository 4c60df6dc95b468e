"""The file store: uploaded files kept in PostgreSQL in fixed-size blocks.

Files stream in (:func:`store`) and out (:class:`FileReader`) one block at a time, so memory
stays bounded by the block size whatever the file's size. Each file records its size,
SHA-256 and encoding. The API stores uploads with the same function.

Encodings: UTF-8 (with or without BOM) is stored as it is. UTF-16 and UTF-32 files (which
carry a BOM, as spreadsheet "Unicode text" exports do) are transcoded to UTF-8 on the way
in, so every stored file is ASCII-compatible and can be split into lines on ``\\n`` bytes.
Other single- and multi-byte encodings (cp1252, latin-1, ...) are stored as they are and
named by charset-normalizer's detection; a file whose encoding cannot be named is refused.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import charset_normalizer
import psycopg2.extensions
from longtask.runner.errors import FileUnreadable

BLOCK_SIZE = 1 << 20  # 1 MiB: large enough for fast COPY-free streaming, small in memory
_DETECT_SAMPLE = 1 << 20  # bytes given to charset-normalizer when a file is not UTF-8

_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

Connection = psycopg2.extensions.connection


@dataclass(frozen=True)
class FileInfo:
    """A stored file: ``size_bytes`` and ``sha256`` are of the stored (UTF-8 or original) bytes."""

    id: uuid.UUID
    organization: str
    filename: str
    size_bytes: int
    sha256: str
    encoding: str
    source_encoding: str
    block_size: int


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


def _transcode(blocks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        for block in blocks:
            yield decoder.decode(block).encode("utf-8")
        yield decoder.decode(b"", final=True).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileUnreadable(f"file starts with a {encoding.upper()} byte-order mark but is not "
                             f"valid {encoding.upper()}: {exc.reason}") from exc


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
) -> FileInfo:
    """Stream ``stream`` into the store in one transaction (committed on return).

    Raises :class:`FileUnreadable` for an empty file, one over ``max_bytes`` (bytes), or one
    whose encoding cannot be determined; nothing is left in the store then.
    """
    file_id = uuid.uuid4()
    head = stream.read(4)
    source_encoding = "utf-8"
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            source_encoding = name
            break
    raw = _prepend(head, _blocks(stream, block_size))
    pieces = _transcode(raw, source_encoding) if source_encoding != "utf-8" else raw

    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="strict")
    is_utf8 = True
    sample = bytearray()
    size = 0
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO longtask.files (id, organization, filename, content_type, "
                "block_size, created_by) VALUES (%s, %s, %s, %s, %s, %s)",
                (file_id, organization, filename, content_type, block_size, created_by),
            )
            for seq, block in enumerate(_rechunk(pieces, block_size)):
                size += len(block)
                if max_bytes is not None and size > max_bytes:
                    raise FileUnreadable(
                        f"file {filename!r} is larger than the limit of {max_bytes} bytes"
                    )
                digest.update(block)
                if len(sample) < _DETECT_SAMPLE:
                    sample += block[: _DETECT_SAMPLE - len(sample)]
                if is_utf8:
                    try:
                        utf8.decode(block)
                    except UnicodeDecodeError:
                        is_utf8 = False
                cur.execute(
                    "INSERT INTO longtask.file_blocks (file_id, seq, data) VALUES (%s, %s, %s)",
                    (file_id, seq, psycopg2.Binary(block)),
                )
            if size == 0:
                raise FileUnreadable(f"file {filename!r} is empty")
            if is_utf8:
                try:
                    utf8.decode(b"", final=True)
                except UnicodeDecodeError:
                    is_utf8 = False
            encoding = "utf-8" if is_utf8 else _detect(bytes(sample), filename)
            if source_encoding != "utf-8":
                source_encoding = f"{source_encoding} (stored as utf-8)"
            elif not is_utf8:
                source_encoding = encoding
            cur.execute(
                "UPDATE longtask.files SET size_bytes = %s, sha256 = %s, encoding = %s, "
                "source_encoding = %s, complete = true WHERE id = %s",
                (size, digest.hexdigest(), encoding, source_encoding, file_id),
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return FileInfo(file_id, organization, filename, size, digest.hexdigest(), encoding,
                    source_encoding, block_size)


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _detect(sample: bytes, filename: str) -> str:
    """Name the encoding of a non-UTF-8 file from a sample; :class:`FileUnreadable` if unsure."""
    best = charset_normalizer.from_bytes(sample).best()
    if best is None or best.encoding in {"utf_8", "utf_16", "utf_32"}:
        raise FileUnreadable(
            f"cannot tell the text encoding of {filename!r}; save it as 'CSV UTF-8' and upload "
            "it again"
        )
    return codecs.lookup(best.encoding).name


def info(conn: Connection, file_id: uuid.UUID, organization: str | None = None) -> FileInfo:
    """The stored file's metadata; :class:`FileNotFound` when absent or incomplete."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, organization, filename, size_bytes, sha256, encoding, source_encoding, "
            "block_size FROM longtask.files WHERE id = %s AND complete",
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
