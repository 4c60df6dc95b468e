"""Storage in the API: the quota's refusal, the retention's answers.

- :func:`quota_problem`: 507 Insufficient Storage (RFC 4918 section 11.5: "the server is
  unable to store the representation needed to complete the request") with the numbers.
  Not 413: the request is not too large in itself (that is ``file-too-large``); the
  organization's storage is full, and the same request succeeds once it frees space.
- :func:`refuse_early`: the refusal before a byte is stored, from ``Content-Length``.
- :func:`gone`: 410 Gone for a file or export output the retention removed, with when and
  why (from the audit, ``longtask.storage_removals``).
- ``GET /v1/tasks/{name}/output/info``: an export output's size and when it will be removed.
- ``GET /v1/storage``: an organization's stored bytes and quota.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from longtask.api import db
from longtask.api.deps import DatabaseDep, SettingsDep, TasksDep, ViewerDep, organization_for
from longtask.api.problems import (
    COMMON_RESPONSES,
    ApiProblem,
    FieldError,
    invalid,
    not_found,
    responses,
)
from longtask.api.schemas import DNS_LABEL, TaskCreate, _Wire
from longtask.api.task_common import visible
from pydantic import Field

from longtask import storage, tasktypes

_SLACK = 1 << 20  # multipart headers and boundaries on top of the file's own bytes

router = APIRouter(tags=["storage"], responses=COMMON_RESPONSES)


def quota_problem(exc: storage.QuotaExceeded) -> ApiProblem:
    """507 ``storage-quota-exceeded``: ``usedBytes``, ``quotaBytes``, ``fileBytes`` (with
    ``fileBytesPartial: true``, what had arrived when the upload was refused as it
    streamed: the file is at least that large) and the organization."""
    return ApiProblem(507, "storage-quota-exceeded", "Insufficient Storage", str(exc),
                      extra={"organization": exc.organization, "usedBytes": exc.used,
                             "quotaBytes": exc.quota, "fileBytes": exc.adding,
                             "fileBytesPartial": exc.partial})


def refuse_early(database: db.Database, organization: str, content_length: str | None,
                 default_quota: int) -> None:
    """Raise :class:`~longtask.storage.QuotaExceeded` when the declared body is larger, by
    more than the multipart overhead, than the organization's room (read without a lock:
    the store checks again under it)."""
    if content_length is None or not content_length.isdigit():
        return
    at_least = int(content_length) - _SLACK
    if at_least <= 0:
        return
    with database.connection() as conn:
        now = storage.usage(conn, organization, default_quota)
    if at_least > now.room:
        raise storage.QuotaExceeded(organization, now.used, now.quota, at_least,
                                    "the upload (its Content-Length less the form's overhead)",
                                    partial=True)


def gone(what: str, retention: storage.Retention) -> ApiProblem:
    """410 ``removed-by-retention`` for a file or output the retention removed."""
    removed = retention.removed_at
    assert removed is not None
    return ApiProblem(410, "removed-by-retention", "Gone",
                      f"{what} was removed at {removed.isoformat()}: "
                      f"{retention.reason or 'its retention ended'}",
                      extra={"removedAt": removed.isoformat(),
                             "reason": retention.reason, "bytes": retention.bytes})


class OutputInfo(_Wire):
    """An export's stored output: bytes, and when the retention removes it."""

    task: str
    bytes: int = Field(description="Bytes of the output's parts stored now")
    expires_at: dt.datetime | None = Field(
        description="When the output will be removed; null while the task may still run, "
                    "resume or roll back (the retention sets it once the task is final)")


class StorageUsage(_Wire):
    """An organization's stored bytes (files and export outputs together) and its quota."""

    organization: str
    used_bytes: int
    quota_bytes: int
    available_bytes: int


@router.get("/v1/tasks/{name}/output/info", response_model=OutputInfo,
            responses=responses(410), summary="An export output's size and expiry")
def output_info(name: str, principal: ViewerDep, tasks: TasksDep,
                database: DatabaseDep) -> OutputInfo:
    """The output's bytes and ``expiresAt``; 404 for a task of another type; 410 once the
    retention removed it."""
    body = visible(tasks, name, principal)
    if (body.get("spec") or {}).get("type") != tasktypes.EXPORT.name:
        raise not_found(f"output of task {name!r}")
    with database.connection() as conn:
        retention = storage.output_retention(conn, uuid.UUID(body["metadata"]["uid"]))
    if retention is None:
        return OutputInfo(task=name, bytes=0, expires_at=None)
    if retention.removed_at is not None:
        raise gone(f"the output of task {name!r}", retention)
    return OutputInfo(task=name, bytes=retention.bytes, expires_at=retention.expires_at)


@router.get("/v1/storage", response_model=StorageUsage, summary="Stored bytes and quota")
def storage_usage(
    principal: ViewerDep, database: DatabaseDep, settings: SettingsDep,
    organization: Annotated[str | None, Query(
        min_length=1, max_length=100, pattern=DNS_LABEL,
        description="The organization; default: the token's only one")] = None,
) -> StorageUsage:
    """The organization's stored bytes (uploads and export outputs) and its quota."""
    org = organization_for(principal, organization)
    with database.connection() as conn:
        now = storage.usage(conn, org, settings.storage_quota_bytes)
    return StorageUsage(organization=org, used_bytes=now.used, quota_bytes=now.quota,
                        available_bytes=now.room)


def claim_input(database: db.Database, create: TaskCreate) -> None:
    """Mark the file a task is being created with as used (no expiry while tasks use it),
    before the task exists: the retention never removes a file a create has claimed
    (:data:`longtask.storage.CLAIM_GRACE_SECONDS`). 422 on ``params.fileId`` when the
    file was removed, or went, since the dry run found it."""
    file_id = (create.params or {}).get("fileId")
    if file_id is None:
        return
    try:
        parsed = uuid.UUID(str(file_id))
    except ValueError:
        return  # the dry run refused it already
    with database.connection(autocommit=False) as conn:
        if storage.claim_file(conn, parsed, create.organization):
            return
        retention = storage.file_retention(conn, parsed)
    why = (f"was removed by the retention at {retention.removed_at.isoformat()}"
           if retention is not None and retention.removed_at is not None
           else "is not in the store")
    detail = f"file {parsed} of organization {create.organization!r} {why}; upload it again"
    raise invalid(detail, [FieldError(detail=detail, field="params.fileId",
                                      pointer="#/params/fileId")])
