"""``POST /v1/tasks`` and ``POST /v1/tasks/validate``: a task is created only after the
dry run the validation answers with finds nothing wrong; an Idempotency-Key makes a retry
return the task it made."""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Response
from longtask.api import db, dryrun
from longtask.api import storage as api_storage
from longtask.api.auth import Principal
from longtask.api.deps import (
    DatabaseDep,
    MetricsDep,
    OperatorDep,
    SettingsDep,
    TasksDep,
    ValidationsDep,
    ViewerDep,
    organization_for,
)
from longtask.api.kube import Conflict, Invalid, Tasks
from longtask.api.metrics import Metrics
from longtask.api.problems import (
    ApiProblem,
    FieldError,
    invalid,
    responses,
)
from longtask.api.schemas import (
    PREFLIGHT_ANNOTATION,
    TaskCreate,
    TaskPublic,
    ValidationReport,
    preflight_annotation,
)
from longtask.api.settings import ApiSettings
from longtask.api.task_common import (
    ANNOTATION_IDEMPOTENCY_KEY,
    ANNOTATION_REQUEST_DIGEST,
    LABEL_REQUESTED_NAME,
    PROBLEMS,
    ROUTER,
    invalid_from_server,
    scoped_name,
)

from longtask.constants import (
    ANNOTATION_REASON,
    ANNOTATION_REQUESTED_BY,
    LABEL_ORGANIZATION,
    LABEL_VALUE_MAX,
)

log = logging.getLogger("longtask.api.tasks")
router = APIRouter(**ROUTER)


def _budget(settings: ApiSettings, rows: int | None) -> dryrun.Budget:
    """The dry run's bounds from the settings; ``rows`` as asked (at most the settings')."""
    return dryrun.Budget(
        rows=min(rows or settings.validate_rows, settings.validate_max_rows),
        bytes=settings.validate_max_bytes, count_bytes=settings.validate_count_bytes,
        seconds=settings.validate_budget_seconds,
        statement_timeout=settings.validate_statement_timeout_seconds)


def _dry_run(database: db.Database, create: TaskCreate,
             budget: dryrun.Budget) -> ValidationReport:
    with database.connection() as conn:
        return dryrun.run(conn, create, budget)


def _refuse_invalid(report: ValidationReport) -> None:
    """422 with the dry run's errors (field paths) when the task would fail before writing
    anything: the very checks ``POST /v1/tasks/validate`` makes, so what it calls invalid
    is never created."""
    if report.valid:
        return
    errors = [FieldError.model_validate(e) for e in report.errors]
    raise invalid("the task would fail before writing anything: "
                  + "; ".join(e.detail for e in errors), errors)


def _task_name(create: TaskCreate, key_digest: str | None) -> dict[str, str]:
    """``{"name": ...}`` (the chosen name scoped by the organization, see
    :func:`~longtask.api.task_common.scoped_name`, or derived from the Idempotency-Key)
    or ``{"generateName"}``.

    A key gives a deterministic name, so two racing retries cannot both create: the second
    gets AlreadyExists and finds the first.
    """
    if create.name:
        return {"name": scoped_name(create.organization, create.name)}
    prefix = f"{create.type.lower()}-{create.organization}"[:40].rstrip("-")
    if key_digest is not None:
        return {"name": f"{prefix}-{key_digest[:16]}"}
    return {"generateName": f"{prefix}-"}


@router.post("", status_code=201, response_model=TaskPublic,
             responses={**PROBLEMS, **responses(408, 429)}, summary="Create a task")
async def create_task(
    create: TaskCreate,
    response: Response,
    principal: OperatorDep,
    tasks: TasksDep,
    database: DatabaseDep,
    metrics: MetricsDep,
    settings: SettingsDep,
    validations: ValidationsDep,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=255,
        description="Retries with the same key and body return the same task")] = None,
) -> TaskPublic:
    """Create a LongTask; 201 with ``Location``.

    With ``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header), a retry with the
    same key and body returns the task created first (``Idempotent-Replayed: true``), across
    API restarts (the key's hash is kept on the LongTask); the same key with another body is
    422. 403 for an organization the token may not use; 422 for what the dry run
    (``/validate``) finds invalid, with its errors: params that do not fit the type, no
    such organization, form or file, a header the form refuses, a file without data rows
    or whose every row is a row error; 409 for a name the organization already uses (a
    chosen ``name`` is scoped by the organization: the LongTask is named
    ``<name>-<12 hex digits>``, the ``name`` of the answer and of its URLs); 503 or 429 when the
    API's dry runs (or the caller's share of them) are all in use.
    """
    organization_for(principal, create.organization)
    report = await validations.run(principal.subject, functools.partial(
        _dry_run, database, create, _budget(settings, None)))
    _refuse_invalid(report)
    # The file is claimed (no expiry) before the task exists, so the retention cannot
    # remove it in between.
    await anyio.to_thread.run_sync(api_storage.claim_input, database, create)
    return await anyio.to_thread.run_sync(functools.partial(
        _create, create, response, principal, tasks, metrics, idempotency_key, report))


def _create(create: TaskCreate, response: Response, principal: Principal, tasks: Tasks,
            metrics: Metrics, idempotency_key: str | None,
            report: ValidationReport) -> TaskPublic:
    """The LongTask of a request its dry run (``report``) found valid (blocking: a worker
    thread); the dry run's warnings go on it (:data:`PREFLIGHT_ANNOTATION`)."""
    digest = hashlib.sha256(create.model_dump_json(by_alias=True).encode()).hexdigest()
    key_digest = None
    annotations = {
        ANNOTATION_REQUESTED_BY: principal.subject,
        ANNOTATION_REASON: create.reason or "created through the API",
        ANNOTATION_REQUEST_DIGEST: digest,
    }
    if report.warnings:
        annotations[PREFLIGHT_ANNOTATION] = preflight_annotation(report.warnings)
    if idempotency_key is not None:
        scope = f"{principal.subject}\0{create.organization}\0{idempotency_key}"
        key_digest = hashlib.sha256(scope.encode()).hexdigest()
        annotations[ANNOTATION_IDEMPOTENCY_KEY] = key_digest
    labels = ({LABEL_ORGANIZATION: create.organization}
              if len(create.organization) <= LABEL_VALUE_MAX else {})
    if create.name:
        labels[LABEL_REQUESTED_NAME] = create.name
    body = {"metadata": {**_task_name(create, key_digest), "annotations": annotations,
                         "labels": labels},
            "spec": create.spec()}
    try:
        created = tasks.create(body)
    except Conflict:
        existing = tasks.get(body["metadata"].get("name", ""))
        if existing is None or key_digest is None or (
                existing["metadata"].get("annotations") or {}
        ).get(ANNOTATION_IDEMPOTENCY_KEY) != key_digest:
            # Only a name of the caller's own organization can be taken here (see
            # scoped_name): the answer tells nothing of another organization's tasks.
            raise ApiProblem(409, "name-taken", "Conflict",
                             f"organization {create.organization!r} already has a task named "
                             f"{create.name or body['metadata'].get('name')!r}") from None
        if existing["metadata"]["annotations"].get(ANNOTATION_REQUEST_DIGEST) != digest:
            raise invalid("Idempotency-Key was used for a different request", [FieldError(
                detail="this key already created a task from a different body",
                parameter="Idempotency-Key")]) from None
        response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = f"/v1/tasks/{existing['metadata']['name']}"
        return TaskPublic.from_body(existing)
    except Invalid as exc:
        raise invalid_from_server(exc) from None
    name = created["metadata"]["name"]
    metrics.tasks_created.labels(create.type).inc()
    tasks.post_event(created, "CreateRequested", "Create",
                     f"created by {principal.subject}: {annotations[ANNOTATION_REASON]}")
    log.info("task_created", extra={"task": name, "type": create.type,
                                    "organization": create.organization,
                                    "subject": principal.subject})
    response.headers["Location"] = f"/v1/tasks/{name}"
    return TaskPublic.from_body(created)


@router.post("/validate", response_model=ValidationReport,
             responses={**PROBLEMS, **responses(408, 429)},
             summary="Dry run: what creating this task would do")
async def validate_task(
    create: TaskCreate,
    principal: ViewerDep,
    database: DatabaseDep,
    settings: SettingsDep,
    validations: ValidationsDep,
    rows: Annotated[int | None, Query(ge=1, description="Data rows to read and parse")] = None,
) -> ValidationReport:
    """Check params, organization, form and file, map the header, parse the first rows.

    Nothing is created. ``valid: false`` with ``errors`` (field paths) when the run would
    fail before writing; ``rowErrors`` for the bad rows among the first ``rows``;
    ``warnings`` for columns that look swapped or hold values of the wrong type, and the
    preflight's against the organization's own stored data (``columns-swapped`` between
    text columns, ``unusually-large``, ``column-shifted``, each with its ``evidence``;
    ``preflight`` says what was compared); ``sampled`` for what was read and which bound
    (rows, bytes, seconds) stopped it.
    503 or 429 with ``Retry-After`` when the API's dry runs (or the caller's share of
    them) are all in use.
    """
    organization_for(principal, create.organization)
    return await validations.run(principal.subject, functools.partial(
        _dry_run, database, create, _budget(settings, rows)))
