"""Streaming ``multipart/form-data`` uploads (RFC 7578) into the file store.

The request body is parsed as it arrives; the bytes of the part named ``file`` are handed
to :func:`longtask.filestore.store_in_blocks` through a file-like object, so at most a few
network chunks and one store block (1 MiB) are in memory, whatever the file's size, and no
database connection is held while the network is waited on. The size limit counts the
file's bytes as they arrive: an oversized upload is refused as soon as it crosses the
limit, and the blocks already written are deleted.

The reading side runs in a worker thread (the store is blocking code); each chunk is
pulled from the event loop with :func:`anyio.from_thread.run`.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.from_thread
from longtask.api.errors import ApiError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

FILE_FIELD = "file"
# Bounds of everything but the file's own bytes, so that no body holds the API's memory:
# the other form fields are few and small (organization, encoding, ...). A part's headers
# are bounded by python-multipart itself (8 headers of at most 4,224 bytes each).
MAX_FIELD_BYTES = 4096  # one field's value
MAX_PARTS = 32  # parts of one body, the file's included


class UploadError(ApiError):
    """Base of the upload errors; the message is for the person uploading."""


class MalformedUpload(UploadError):
    """The body is not ``multipart/form-data`` as RFC 7578 describes it."""


class MissingFile(UploadError):
    """The body has no part named ``file`` carrying a file."""


class TooLarge(UploadError):
    """The file is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the limit of {limit} bytes")
        self.limit = limit


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` content type; :class:`MalformedUpload`."""
    if not content_type:
        raise MalformedUpload("no Content-Type: send multipart/form-data with a 'file' part")
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise MalformedUpload(
            f"Content-Type {kind.decode(errors='replace')!r} is not multipart/form-data")
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedUpload("multipart/form-data without a boundary parameter")
    return boundary


async def _next_chunk(chunks: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None


class MultipartFile(io.RawIOBase):
    """The ``file`` part of a multipart body, readable as it arrives (a ``BinaryIO``).

    ``pull()`` returns the body's next raw chunk, ``None`` or ``b""`` at its end. Call
    :meth:`open` before reading (it finds the file part and its ``filename``), and
    :meth:`finish` after, which reads the rest of the body and checks it is well formed.
    """

    def __init__(self, pull: Callable[[], bytes | None], boundary: bytes,
                 max_bytes: int) -> None:
        super().__init__()
        self._pull = pull
        self._max = max_bytes
        self.received = 0  # bytes of the file part so far
        self.filename: str | None = None
        self.content_type: str | None = None
        self.fields: dict[str, str] = {}
        self._pending = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._part: str | None = None  # "file", a field name, or None (ignored part)
        self._field_data = bytearray()
        self._parts = 0
        self._found = False
        self._file_done = False
        self._ended = False
        self._body_done = False
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    # --------------------------------------------------------------- parser callbacks
    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise MalformedUpload(
                f"the form has more than {MAX_PARTS} parts; send the 'file' part and the "
                "few fields the endpoint names")
        self._headers = {}
        self._part = None
        self._field_data.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", errors="replace")
        filename = options.get(b"filename")
        if name == FILE_FIELD and not self._found:
            if filename is None:
                raise MissingFile("the 'file' part is not a file (it has no filename)")
            self._found = True
            self._part = FILE_FIELD
            self.filename = filename.decode("utf-8", errors="replace").rsplit("/", 1)[-1]
            self.filename = self.filename.rsplit("\\", 1)[-1] or "upload.csv"
            ctype = self._headers.get(b"content-type")
            self.content_type = ctype.decode("latin-1") if ctype else None
        elif filename is None and name:
            self._part = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == FILE_FIELD:
            self.received += end - start
            if self.received > self._max:
                raise TooLarge(self._max)
            self._pending += data[start:end]
        elif self._part is not None:
            self._field_data += data[start:end]
            if len(self._field_data) > MAX_FIELD_BYTES:
                raise MalformedUpload(
                    f"form field {self._part[:100]!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._part == FILE_FIELD:
            self._file_done = True
        elif self._part is not None:
            self.fields[self._part] = self._field_data.decode("utf-8", errors="replace")
        self._part = None

    def _end(self) -> None:
        self._ended = True

    # ---------------------------------------------------------------------- reading
    def _feed(self) -> bool:
        """Parse the next chunk of the body; False at its end."""
        if self._body_done:
            return False
        chunk = self._pull()
        if not chunk:
            self._body_done = True
            return False
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedUpload(f"malformed multipart body: {exc}") from None
        return True

    def open(self) -> None:
        """Read up to the file part's headers; :class:`MissingFile` when there is none."""
        while not self._found:
            if not self._feed():
                raise MissingFile("the body has no part named 'file'")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._file_done:
            if not self._feed():
                raise MalformedUpload("the body ended inside the file part")
        if not self._pending:
            self.finish()  # the end of the file is reported only once the body checks out
            return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        del self._pending[:size]
        return size

    def finish(self) -> None:
        """Read the rest of the body; :class:`MalformedUpload` if it does not end properly."""
        while self._feed():
            pass
        if not self._ended:
            raise MalformedUpload("the multipart body ends without its closing boundary")

    def drain(self, limit: int) -> None:
        """Read and drop up to ``limit`` more body bytes, unparsed (after a refusal, so the
        client, still sending, gets to read the answer)."""
        seen = 0
        while seen < limit and not self._body_done:
            try:
                chunk = self._pull()
            except UploadError:
                return
            if not chunk:
                self._body_done = True
                return
            seen += len(chunk)


def pull_from(stream: AsyncIterator[bytes]) -> Callable[[], bytes | None]:
    """A blocking ``pull()`` over the request's async body stream, for a worker thread.

    A client that goes away mid-upload raises :class:`MalformedUpload`.
    """
    def pull() -> bytes | None:
        try:
            return anyio.from_thread.run(_next_chunk, stream)
        except ClientDisconnect:
            raise MalformedUpload("the client went away before the body ended") from None
    return pull
