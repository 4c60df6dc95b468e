"""``/v1/files``: upload a CSV into the file store (streamed), read a stored file's facts."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from longtask.api import db, uploads
from longtask.api import storage as api_storage
from longtask.api.deps import (
    DatabaseDep,
    MetricsDep,
    OperatorDep,
    SettingsDep,
    ViewerDep,
    organization_for,
)
from longtask.api.problems import (
    COMMON_RESPONSES,
    ApiProblem,
    FieldError,
    invalid,
    not_found,
    responses,
)
from longtask.api.schemas import DNS_LABEL, FilePublic
from longtask.runner import rules

from longtask import filestore, storage, textencoding
from longtask.csvsource import CsvFile
from longtask.errors import FileUnreadable, HeaderError

log = logging.getLogger("longtask.api.files")
router = APIRouter(prefix="/v1/files", tags=["files"], responses=COMMON_RESPONSES)

_SLACK = 1 << 20  # multipart headers and boundaries on top of the file's own bytes
_DRAIN = 8 << 20  # body bytes read after a refusal so the client sees the answer
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "The CSV file"}},
        }}},
    }
}


def describe(conn: db.Connection, info: filestore.FileInfo) -> FilePublic:
    """A stored file's facts, with its header, a row count and decoded lines from its
    first block.

    Only the first block (1 MiB) is read: the count is exact when the file fits in it,
    else the records in that block scaled by the file's size.
    """
    head = next(filestore.read_blocks(conn, info), b"")
    warnings: list[str] = []
    names: list[str] | None = None
    estimate: int | None = None

    def source(offset: int) -> Iterator[bytes]:
        if offset < len(head):
            yield head[offset:]

    sample = CsvFile(source, encoding=info.encoding, head=head, filename=info.filename)
    exact = len(head) >= info.size_bytes
    try:
        header = sample.header()
        names = header.names
        rules.header_index(header, info.filename)
    except HeaderError as exc:
        warnings.append(str(exc))
    except FileUnreadable as exc:
        warnings.append(str(exc))
        header = None
    if header is not None:
        records = sample.count(header.end)
        body_sample = len(head) - header.end.offset
        if exact or body_sample <= 0:
            estimate = records
        else:
            # The block's last record may be cut short: count it as half.
            estimate = round((records - 0.5) * (info.size_bytes - header.end.offset)
                             / body_sample)
    facts = info.encoding_facts
    retention = storage.file_retention(conn, info.id)
    return FilePublic(
        id=info.id, organization=info.organization, filename=info.filename,
        size_bytes=info.size_bytes, sha256=info.sha256, encoding=info.encoding,
        encoding_label=textencoding.label_of(info.encoding), encoding_source=facts.source,
        encoding_confidence=facts.confidence,
        decoded_samples=textencoding.decoded_lines(head, info.encoding),
        source_encoding=info.source_encoding, header=names, row_count_estimate=estimate,
        row_count_exact=exact, warnings=warnings,
        expires_at=retention.expires_at if retention is not None else None,
    )


@router.post(
    "", status_code=201, response_model=FilePublic, openapi_extra=_UPLOAD_BODY,
    responses=responses(400, 408, 413, 415, 507),
    summary="Upload a CSV file (multipart/form-data, part 'file')",
)
def upload_file(
    request: Request,
    response: Response,
    principal: OperatorDep,
    database: DatabaseDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    organization: Annotated[str | None, Query(
        min_length=1, max_length=100, pattern=DNS_LABEL,
        description="The organization the file belongs to; default: the token's only one")]
        = None,
    encoding: Annotated[str | None, Query(
        min_length=1, max_length=40,
        description="The file's encoding (cp1252, cp1250, cp1251, cp1254, cp1256, shift_jis, "
                    "gb18030, utf-16, ...), when detection is not sure of it; default: told "
                    "from the bytes")] = None,
) -> FilePublic:
    """Stream the ``file`` part into the file store; 201 with the file's facts.

    The encoding is checked (UTF-8, a UTF-16/32 byte-order mark) or detected among the code
    pages spreadsheets write; a detection below confidence 0.9 is refused (422, with the
    likeliest readings under ``encodingCandidates``) unless ``encoding`` names it. 413 when
    the file is over ``LONGTASK_API_MAX_UPLOAD_BYTES`` (checked against ``Content-Length``
    first, then as bytes arrive); 415 when the body is not multipart; 422 when the file
    cannot be read as text (empty, not valid in the encoding named, encoding unknown or
    uncertain) or the part is missing; 400 for a malformed body; 507 when the file would
    take the organization past its storage quota (``LONGTASK_API_STORAGE_QUOTA_BYTES`` or
    its own; refused from ``Content-Length`` first, while the bytes arrive, and under the
    organization's usage lock before it is completed: :mod:`longtask.storage`). Nothing is
    stored unless all of it is.
    """
    org = organization_for(principal, organization)
    limit = settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + _SLACK:
        raise _too_large(limit)
    try:
        boundary = uploads.boundary_of(request.headers.get("content-type"))
    except uploads.MalformedUpload as exc:
        raise ApiProblem(415, "unsupported-media-type", "Unsupported Media Type",
                         str(exc)) from None
    body = uploads.MultipartFile(uploads.pull_from(request.stream()), boundary, limit)
    try:
        api_storage.refuse_early(database, org, length, settings.storage_quota_bytes)
    except storage.QuotaExceeded as exc:
        _drain(body)
        raise api_storage.quota_problem(exc) from None
    if encoding is not None:
        try:
            textencoding.check_named(encoding)
        except FileUnreadable as exc:
            _drain(body)
            raise invalid(str(exc), [FieldError(detail=str(exc), field="encoding",
                                                parameter="encoding")]) from None
    try:
        body.open()
        # A block is read whole from the network before a pooled connection is taken to
        # write it: a slow sender holds no connection and no transaction. The quota is
        # checked under the organization's usage lock in the short transaction that
        # completes the file.
        info = filestore.store_in_blocks(
            database.connection, io.BufferedReader(body, 1 << 16), organization=org,
            filename=body.filename or "upload.csv", content_type=body.content_type,
            created_by=principal.subject, max_bytes=limit, encoding=encoding,
            quota_bytes=settings.storage_quota_bytes,
            expires_in_seconds=settings.unused_file_retention_seconds)
        with database.connection() as conn:
            described = describe(conn, info)
    except uploads.TooLarge:
        _drain(body)
        raise _too_large(limit) from None
    except uploads.MissingFile as exc:
        _drain(body)
        raise invalid(str(exc), [FieldError(detail=str(exc), field="file",
                                            pointer="#/file")]) from None
    except uploads.MalformedUpload as exc:
        raise ApiProblem(400, "malformed-upload", "Bad Request", str(exc)) from None
    except storage.QuotaExceeded as exc:
        _drain(body)
        log.info("upload_refused_quota", extra={
            "organization": org, "used": exc.used, "quota": exc.quota, "bytes": exc.adding,
            "subject": principal.subject})
        raise api_storage.quota_problem(exc) from None
    except textencoding.EncodingUncertain as exc:
        _drain(body)
        raise _uncertain(exc) from None
    except FileUnreadable as exc:
        _drain(body)
        raise invalid(str(exc), [FieldError(detail=str(exc), field="file",
                                            pointer="#/file")]) from None
    metrics.upload_bytes.inc(info.size_bytes)
    log.info("file_stored", extra={"file": str(info.id), "organization": org,
                                   "bytes": info.size_bytes, "subject": principal.subject})
    response.headers["Location"] = f"/v1/files/{info.id}"
    return described


def _uncertain(exc: textencoding.EncodingUncertain) -> ApiProblem:
    """422 for an encoding not told for sure: the readings, and the two ways out."""
    return ApiProblem(
        422, "encoding-uncertain", "Unprocessable Content", str(exc),
        errors=[FieldError(detail=str(exc), field="file", pointer="#/file"),
                FieldError(detail="name the file's encoding to store it as it is",
                           field="encoding", parameter="encoding")],
        extra={"encodingCandidates": [r.to_json() for r in exc.readings]})


def _too_large(limit: int) -> ApiProblem:
    return ApiProblem(413, "file-too-large", "Content Too Large",
                      f"the file is larger than the limit of {limit} bytes",
                      extra={"limit": limit})


def _drain(body: uploads.MultipartFile) -> None:
    body.drain(_DRAIN)


@router.get("/{file_id}", response_model=FilePublic, responses=responses(410),
            summary="A stored file's facts")
def get_file(file_id: uuid.UUID, principal: ViewerDep, database: DatabaseDep) -> FilePublic:
    """The file's size, SHA-256, encoding, header, row count and ``expiresAt``; 404 for
    another organization's; 410 once the retention removed it."""
    with database.connection() as conn:
        try:
            info = filestore.info(conn, file_id)
        except filestore.FileNotFound:
            retention = storage.file_retention(conn, file_id)
            if (retention is not None and retention.removed_at is not None
                    and principal.may_use(retention.organization)):
                raise api_storage.gone(f"file {file_id}", retention) from None
            raise not_found(f"file {file_id}") from None
        if not principal.may_use(info.organization):
            raise not_found(f"file {file_id}")
        return describe(conn, info)
