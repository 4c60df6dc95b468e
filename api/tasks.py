"""``/v1/tasks``: create, list, read, control, patch; row errors, output, history, watch.

The API edits ``spec`` (and the requested-by / reason annotations, in the same merge patch)
and reads ``status``; the operator does the rest. A task of an organization the caller may
not use is answered exactly like a missing one (404).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from longtask.api import control, db, dryrun
from longtask.api.auth import Principal
from longtask.api.deps import (
    DatabaseDep,
    MetricsDep,
    OperatorDep,
    SettingsDep,
    TasksDep,
    ViewerDep,
    organization_for,
)
from longtask.api.kube import Conflict, Invalid, KubeUnavailable, ResourceExpired, Tasks
from longtask.api.problems import (
    COMMON_RESPONSES,
    ApiProblem,
    FieldError,
    body_error,
    invalid,
    not_found,
    responses,
)
from longtask.api.schemas import (
    DNS_LABEL,
    ControlRequest,
    History,
    HistoryEntry,
    RowErrorList,
    RowErrorPublic,
    TaskCreate,
    TaskList,
    TaskPublic,
    TaskUpdate,
    TerminateRequest,
    ValidationReport,
)
from longtask.api.settings import ApiSettings

from longtask import taskrecord, tasktypes
from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY, GROUP
from longtask.db import connect as connect_db
from longtask.phases import DesiredState, OnTerminate, Phase
from longtask.taskrecord import TaskRecord

log = logging.getLogger("longtask.api.tasks")
router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=COMMON_RESPONSES)

# Annotations only the API reads: the Idempotency-Key (hashed) a task was created with,
# and the SHA-256 of the create request, to tell a retry from a different request.
ANNOTATION_IDEMPOTENCY_KEY = f"{GROUP}/idempotency-key-sha256"
ANNOTATION_REQUEST_DIGEST = f"{GROUP}/create-request-sha256"
CONFLICT_RETRIES = 5
_NAME = re.compile(DNS_LABEL)

_PROBLEMS = responses(409)


# ------------------------------------------------------------------------------ helpers


def _visible(tasks: Tasks, name: str, principal: Principal) -> dict[str, Any]:
    """The LongTask ``name`` if the caller may see it; 404 otherwise (missing or not theirs).

    A name no LongTask can have (not a DNS-1123 label) is missing too.
    """
    if len(name) > 63 or not _NAME.match(name):
        raise not_found(f"task {name!r}")
    body = tasks.get(name)
    if body is None or not principal.may_use(str((body.get("spec") or {}).get("organization"))):
        raise not_found(f"task {name!r}")
    return body


def _phase(body: Mapping[str, Any]) -> Phase:
    return Phase((body.get("status") or {}).get("phase") or Phase.PENDING)


def _invalid_from_server(exc: Invalid, prefix: str = "spec.") -> ApiProblem:
    """The server's 422 (schema or CEL rule) as a problem with request field paths."""
    errors = []
    for field, message in exc.causes:
        path = field[len(prefix):] if field.startswith(prefix) else field
        errors.append(body_error([p for p in path.split(".") if p], message) if path
                      else FieldError(detail=message))
    return invalid(f"the task was refused: {exc.message}", errors)


def _encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        values = None
    if not isinstance(values, list) or len(values) != size:
        raise invalid("the cursor is not one this API gave out",
                      [FieldError(detail="not a cursor from a previous page", field="cursor",
                                  parameter="cursor")])
    return values


def _next_link(request: Request, cursor: str | None, response: Response) -> None:
    """Add ``Link: <...>; rel="next"`` (RFC 8288) for the following page."""
    if cursor is not None:
        url = request.url.include_query_params(cursor=cursor)
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'


# ------------------------------------------------------------------------------- create


def _refuse_invalid(database: db.Database, settings: ApiSettings, create: TaskCreate) -> None:
    """422 with the dry run's errors (field paths) when the task would fail before writing
    anything: the very checks ``POST /v1/tasks/validate`` makes, so what it calls invalid
    is never created. A file's rows are counted beside the checks, on a connection of
    their own, and the count given up when they end (a create does not wait for it)."""
    url = settings.database_url

    def connect(purpose: str) -> db.Connection:
        conn = connect_db(url, application_name=f"longtask-api-{purpose}")
        conn.autocommit = True
        return conn

    limit = min(settings.validate_rows, settings.validate_max_rows)
    with database.connection() as conn:
        report = dryrun.run(conn, create, rows=limit, connect=connect,
                            statement_timeout=settings.validate_statement_timeout_seconds)
    if report.valid:
        return
    errors = [FieldError.model_validate(e) for e in report.errors]
    raise invalid("the task would fail before writing anything: "
                  + "; ".join(e.detail for e in errors), errors)


def _task_name(create: TaskCreate, key_digest: str | None) -> dict[str, str]:
    """``{"name": ...}`` (given, or derived from the Idempotency-Key) or ``{"generateName"}``.

    A key gives a deterministic name, so two racing retries cannot both create: the second
    gets AlreadyExists and finds the first.
    """
    if create.name:
        return {"name": create.name}
    prefix = f"{create.type.lower()}-{create.organization}"[:40].rstrip("-")
    if key_digest is not None:
        return {"name": f"{prefix}-{key_digest[:16]}"}
    return {"generateName": f"{prefix}-"}


@router.post("", status_code=201, response_model=TaskPublic, responses=_PROBLEMS,
             summary="Create a task")
def create_task(
    create: TaskCreate,
    response: Response,
    principal: OperatorDep,
    tasks: TasksDep,
    database: DatabaseDep,
    metrics: MetricsDep,
    settings: SettingsDep,
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
    or whose every row is a row error; 409 for a name already taken.
    """
    organization_for(principal, create.organization)
    _refuse_invalid(database, settings, create)
    digest = hashlib.sha256(create.model_dump_json(by_alias=True).encode()).hexdigest()
    key_digest = None
    annotations = {
        ANNOTATION_REQUESTED_BY: principal.subject,
        ANNOTATION_REASON: create.reason or "created through the API",
        ANNOTATION_REQUEST_DIGEST: digest,
    }
    if idempotency_key is not None:
        scope = f"{principal.subject}\0{create.organization}\0{idempotency_key}"
        key_digest = hashlib.sha256(scope.encode()).hexdigest()
        annotations[ANNOTATION_IDEMPOTENCY_KEY] = key_digest
    body = {"metadata": {**_task_name(create, key_digest), "annotations": annotations},
            "spec": create.spec()}
    try:
        created = tasks.create(body)
    except Conflict:
        existing = tasks.get(body["metadata"].get("name", ""))
        if existing is None or key_digest is None or (
                existing["metadata"].get("annotations") or {}
        ).get(ANNOTATION_IDEMPOTENCY_KEY) != key_digest:
            raise ApiProblem(409, "name-taken", "Conflict",
                             f"a task named {body['metadata'].get('name')!r} already exists"
                             ) from None
        if existing["metadata"]["annotations"].get(ANNOTATION_REQUEST_DIGEST) != digest:
            raise invalid("Idempotency-Key was used for a different request", [FieldError(
                detail="this key already created a task from a different body",
                parameter="Idempotency-Key")]) from None
        response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = f"/v1/tasks/{existing['metadata']['name']}"
        return TaskPublic.from_body(existing)
    except Invalid as exc:
        raise _invalid_from_server(exc) from None
    name = created["metadata"]["name"]
    metrics.tasks_created.labels(create.type).inc()
    tasks.post_event(created, "CreateRequested", "Create",
                     f"created by {principal.subject}: {annotations[ANNOTATION_REASON]}")
    log.info("task_created", extra={"task": name, "type": create.type,
                                    "organization": create.organization,
                                    "subject": principal.subject})
    response.headers["Location"] = f"/v1/tasks/{name}"
    return TaskPublic.from_body(created)


@router.post("/validate", response_model=ValidationReport, responses=_PROBLEMS,
             summary="Dry run: what creating this task would do")
def validate_task(
    create: TaskCreate,
    principal: ViewerDep,
    database: DatabaseDep,
    settings: SettingsDep,
    rows: Annotated[int | None, Query(ge=1, description="Data rows to read and parse")] = None,
) -> ValidationReport:
    """Check params, organization, form and file, map the header, parse the first rows.

    Nothing is created. ``valid: false`` with ``errors`` (field paths) when the run would
    fail before writing; ``rowErrors`` for the bad rows among the first ``rows``;
    ``warnings`` for columns that look swapped or hold values of the wrong type.
    """
    organization_for(principal, create.organization)
    limit = min(rows or settings.validate_rows, settings.validate_max_rows)
    with database.connection() as conn:
        return dryrun.run(conn, create, rows=limit,
                          statement_timeout=settings.validate_statement_timeout_seconds)


# --------------------------------------------------------------------------------- read


@router.get("", response_model=TaskList, responses=_PROBLEMS, summary="List tasks")
def list_tasks(
    request: Request,
    response: Response,
    principal: ViewerDep,
    tasks: TasksDep,
    settings: SettingsDep,
    organization: Annotated[list[str] | None, Query()] = None,
    type: Annotated[list[tasktypes.TaskTypeName] | None, Query()] = None,
    phase: Annotated[list[Phase] | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    cursor: Annotated[str | None, Query(description="From the previous page's next")] = None,
) -> TaskList:
    """Tasks the caller may see, newest first, filtered; each filter may repeat (any of).

    Paginated by a cursor (stable while tasks are added); ``Link: rel="next"`` too.
    """
    size = min(limit or settings.page_size, settings.max_page_size)
    after = _decode_cursor(cursor, 2) if cursor else None
    rows = []
    for body in tasks.list_all():
        spec = body.get("spec") or {}
        org = str(spec.get("organization"))
        if not principal.may_use(org) or (organization and org not in organization):
            continue
        if type and spec.get("type") not in type:
            continue
        if phase and _phase(body) not in phase:
            continue
        key = [body["metadata"]["creationTimestamp"], body["metadata"]["name"]]
        if after is not None and key >= after:
            continue
        rows.append((key, body))
    rows.sort(key=lambda r: r[0], reverse=True)
    page = rows[:size]
    next_cursor = _encode_cursor(page[-1][0]) if len(rows) > size else None
    _next_link(request, next_cursor, response)
    return TaskList(items=[TaskPublic.from_body(b) for _, b in page], next=next_cursor)


@router.get("/{name}", response_model=TaskPublic, responses=_PROBLEMS, summary="A task")
def get_task(name: str, principal: ViewerDep, tasks: TasksDep) -> TaskPublic:
    """Spec, phase, conditions, progress (with ETA), timestamps, last control action."""
    return TaskPublic.from_body(_visible(tasks, name, principal))


# ------------------------------------------------------------------------------ control


def _hold(database: db.Database, body: Mapping[str, Any]) -> None:
    """Put the new ``spec.state`` in force in the runner's record before answering.

    A pause or terminate holds the run (no later chunk commits once this returns; it waits
    at most for the chunk in flight); a resume releases it (:func:`longtask.taskrecord.hold`).
    The operator does the same for changes made with kubectl or GitOps.
    """
    state = (body.get("spec") or {}).get("state") or DesiredState.RUNNING
    record = TaskRecord.from_body(body)
    with database.connection(autocommit=False) as conn:
        if not taskrecord.hold(conn, record,
                               None if state == DesiredState.RUNNING else str(state)):
            log.warning("hold_not_set", extra={"task": record.name, "state": state})


def _apply(tasks: Tasks, metrics: Any, name: str, principal: Principal, *, action: str,
           target: DesiredState | None, on_terminate: OnTerminate | None = None,
           fixed: Mapping[str, Any] | None = None, reason: str | None,
           database: db.Database) -> dict[str, Any]:
    """Decide and merge-patch one control request; the task as it stands after it.

    The patch is conditional on the ``resourceVersion`` read, so two racing requests cannot
    both pass the check: the loser re-reads and finds its request in effect (or refused).
    The requested-by and reason annotations go in the same patch as ``spec``.
    """
    for _ in range(CONFLICT_RETRIES):
        body = _visible(tasks, name, principal)
        spec = body.get("spec") or {}
        decision = control.decide(spec, _phase(body), target, on_terminate)
        if decision.refusal is not None:
            metrics.control_actions.labels(action, "refused").inc()
            raise ApiProblem(409, "invalid-transition", "Conflict", decision.refusal,
                             extra={"phase": str(_phase(body)), "state": spec.get("state")})
        spec_patch = dict(decision.patch)
        for key, value in (fixed or {}).items():
            if spec.get(key) != value:
                spec_patch[key] = value
        if not spec_patch:
            metrics.control_actions.labels(action, "in_effect").inc()
            return body
        patch = {
            "metadata": {
                "resourceVersion": body["metadata"]["resourceVersion"],
                "annotations": {ANNOTATION_REQUESTED_BY: principal.subject,
                                ANNOTATION_REASON: reason},
            },
            "spec": spec_patch,
        }
        try:
            updated = tasks.patch(name, patch)
        except Conflict:
            continue
        except Invalid as exc:
            raise _invalid_from_server(exc) from None
        if updated is None:
            raise not_found(f"task {name!r}")
        if "state" in spec_patch:
            _hold(database, updated)
        metrics.control_actions.labels(action, "applied").inc()
        what = ", ".join(f"{k}={v}" for k, v in spec_patch.items())
        tasks.post_event(updated, "ControlRequested", action.capitalize(),
                         f"{action} ({what}) requested by {principal.subject}"
                         + (f": {reason}" if reason else ""))
        log.info("control_applied", extra={"task": name, "action": action, "spec": spec_patch,
                                           "subject": principal.subject})
        return updated
    raise ApiProblem(409, "busy", "Conflict",
                     "the task changed under every attempt to update it; try again")


_CONTROL = dict(status_code=202, response_model=TaskPublic, responses=_PROBLEMS)


@router.post("/{name}/pause", summary="Pause at the next checkpoint", **_CONTROL)  # type: ignore[arg-type]
def pause_task(name: str, principal: OperatorDep, tasks: TasksDep, metrics: MetricsDep,
               database: DatabaseDep,
               body: Annotated[ControlRequest | None, Body()] = None) -> TaskPublic:
    """``spec.state: Paused``; 202 with the task. 409 for a terminated or ended task."""
    return TaskPublic.from_body(_apply(
        tasks, metrics, name, principal, action="pause", target=DesiredState.PAUSED,
        reason=body.reason if body else None, database=database))


@router.post("/{name}/resume", summary="Resume from the last checkpoint", **_CONTROL)  # type: ignore[arg-type]
def resume_task(name: str, principal: OperatorDep, tasks: TasksDep, metrics: MetricsDep,
                database: DatabaseDep,
                body: Annotated[ControlRequest | None, Body()] = None) -> TaskPublic:
    """``spec.state: Running``; 202 with the task. 409 after a terminate or once ended."""
    return TaskPublic.from_body(_apply(
        tasks, metrics, name, principal, action="resume", target=DesiredState.RUNNING,
        reason=body.reason if body else None, database=database))


@router.post("/{name}/terminate", summary="Stop for good, then roll back or keep",
             **_CONTROL)  # type: ignore[arg-type]
def terminate_task(name: str, principal: OperatorDep, tasks: TasksDep, metrics: MetricsDep,
                   database: DatabaseDep,
                   body: Annotated[TerminateRequest | None, Body()] = None) -> TaskPublic:
    """``spec.state: Terminated`` (and ``onTerminate`` from ``rollback``); 202 with the task.

    Repeating it is not an error; 409 for a completed task (its writes are kept) or a
    terminated one asked for another ``rollback`` choice.
    """
    policy = None
    if body is not None and body.rollback is not None:
        policy = OnTerminate.ROLLBACK if body.rollback else OnTerminate.KEEP
    return TaskPublic.from_body(_apply(
        tasks, metrics, name, principal, action="terminate", target=DesiredState.TERMINATED,
        on_terminate=policy, reason=body.reason if body else None, database=database))


@router.patch(
    "/{name}", response_model=TaskPublic, responses=_PROBLEMS,
    summary="JSON merge patch of the editable spec fields (as kubectl edit)",
    openapi_extra={"requestBody": {"content": {"application/merge-patch+json": {
        "schema": {"$ref": "#/components/schemas/TaskUpdate"}}}}},
)
def patch_task(
    name: str,
    update: TaskUpdate,
    principal: OperatorDep,
    tasks: TasksDep,
    metrics: MetricsDep,
    database: DatabaseDep,
    reason: Annotated[str | None, Query(max_length=1024, description="Why")] = None,
) -> TaskPublic:
    """Apply ``state``, ``onTerminate``, ``rateLimit``, ``parallelism`` (RFC 7396).

    State changes follow the same rules as the actions (409 for a refused transition);
    fields fixed at creation by the CRD are refused by the server, answered 422 with its
    reason. 200 with the task as it now stands.
    """
    given = update.model_fields_set
    for field in ("state", "on_terminate", "parallelism"):
        if field in given and getattr(update, field) is None:
            alias = TaskUpdate.model_fields[field].alias or field
            raise invalid(f"{alias} cannot be removed", [body_error([alias], "cannot be null")])
    fixed: dict[str, Any] = {}
    if "rate_limit" in given:
        fixed["rateLimit"] = update.rate_limit
    if "parallelism" in given:
        fixed["parallelism"] = update.parallelism
    return TaskPublic.from_body(_apply(
        tasks, metrics, name, principal, action="patch", target=update.state,
        on_terminate=update.on_terminate, fixed=fixed, reason=reason,
        database=database))


# ------------------------------------------------------------------------- row errors


@router.get("/{name}/errors", response_model=RowErrorList, responses=_PROBLEMS,
            summary="Row errors, by line")
def task_errors(
    name: str,
    request: Request,
    response: Response,
    principal: ViewerDep,
    tasks: TasksDep,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query()] = None,
) -> RowErrorList:
    """The rows the runner refused, from its record (empty before it has run)."""
    body = _visible(tasks, name, principal)
    uid = uuid.UUID(body["metadata"]["uid"])
    after = _decode_cursor(cursor, 2) if cursor else [0, 0]
    if not all(isinstance(v, int) for v in after):
        raise invalid("bad cursor", [FieldError(detail="not a cursor from a previous page",
                                                field="cursor", parameter="cursor")])
    with database.connection() as conn:
        total, stored = db.row_error_counts(conn, uid)
        rows = db.row_errors_page(conn, uid, (after[0], after[1]), limit + 1)
    page = rows[:limit]
    next_cursor = _encode_cursor([page[-1].line, page[-1].id]) if len(rows) > limit else None
    _next_link(request, next_cursor, response)
    return RowErrorList(
        total=total, stored=stored, next=next_cursor,
        items=[RowErrorPublic(line=r.line, column=r.column, reason=r.reason, value=r.value)
               for r in page])


# ------------------------------------------------------------------------------ output


class DigestCache:
    """Whole-output SHA-256s already computed, by task uid and parts (so a changed output
    is never served with an old digest). Bounded LRU."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: str) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_OUTPUT_HEADERS = {
    "Repr-Digest": {"description": "RFC 9530: sha-256 of the whole CSV, base64",
                    "schema": {"type": "string"}},
    "LongTask-Output-SHA256": {"description": "The same digest in hex, as sha256sum prints it",
                               "schema": {"type": "string"}},
    "LongTask-Output-Rows": {"description": "Data rows in the output",
                             "schema": {"type": "integer"}},
}


@router.get(
    "/{name}/output", response_class=StreamingResponse, summary="The export's CSV",
    responses={200: {"content": {"text/csv": {}}, "headers": _OUTPUT_HEADERS}, **_PROBLEMS},
)
def task_output(
    name: str,
    request: Request,
    principal: ViewerDep,
    tasks: TasksDep,
    database: DatabaseDep,
    partial: Annotated[bool, Query(
        description="Serve what a running or paused export has written so far")] = False,
) -> StreamingResponse:
    """Stream an Export's CSV from its parts, one part in memory at a time.

    ``Content-Length`` is the sum of the parts' sizes. ``Repr-Digest`` (RFC 9530) and
    ``LongTask-Output-SHA256`` carry the SHA-256 of the whole output, computed by a first
    streaming pass over the parts (then cached): compare it with ``sha256sum`` of the
    download. Each part is checked against the runner's own SHA-256 as it is sent; a part
    that changed underneath ends the stream early (the length then does not match).
    404 for a task of another type; 409 until the export has succeeded (unless
    ``partial=true``) and after it was rolled back.
    """
    body = _visible(tasks, name, principal)
    spec = body.get("spec") or {}
    if spec.get("type") != tasktypes.EXPORT.name:
        raise not_found(f"output of task {name!r} ({spec.get('type')} tasks write no output)")
    phase = _phase(body)
    if phase in (Phase.ROLLED_BACK, Phase.ROLLING_BACK) or (
            phase is Phase.TERMINATING and spec.get("onTerminate") != OnTerminate.KEEP):
        raise ApiProblem(409, "output-removed", "Conflict",
                         f"the export was terminated and its output removed ({phase})")
    if phase is not Phase.SUCCEEDED and not partial:
        raise ApiProblem(409, "output-not-ready", "Conflict",
                         f"the export is {phase}; its output is served once it has Succeeded "
                         "(pass partial=true for what it has written so far)",
                         extra={"phase": str(phase)})
    uid = uuid.UUID(body["metadata"]["uid"])
    cache: DigestCache = request.app.state.digests
    with database.connection() as conn:
        parts = db.export_parts(conn, uid)
        key = (uid, tuple((p.part, p.size, p.sha256) for p in parts))
        digest = cache.get(key)
        if digest is None:
            whole = hashlib.sha256()
            for part in parts:
                whole.update(db.export_part_data(conn, uid, part.part))
            digest = whole.hexdigest()
            cache.put(key, digest)
    headers = {
        "Content-Length": str(sum(p.size for p in parts)),
        "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(digest)).decode()}:",
        "LongTask-Output-SHA256": digest,
        "LongTask-Output-Rows": str(sum(p.rows for p in parts)),
        "LongTask-Output-Complete": "true" if phase is Phase.SUCCEEDED else "false",
        "Content-Disposition": f'attachment; filename="{name}.csv"',
    }
    return StreamingResponse(_stream_parts(database, uid, parts), headers=headers,
                             media_type="text/csv; charset=utf-8")


def _stream_parts(database: db.Database, uid: uuid.UUID,
                  parts: list[db.PartRow]) -> Iterator[bytes]:
    with database.connection() as conn:
        for part in parts:
            try:
                data = db.export_part_data(conn, uid, part.part)
            except LookupError:
                log.warning("output_part_gone", extra={"task_uid": str(uid), "part": part.part})
                return
            if hashlib.sha256(data).hexdigest() != part.sha256:
                log.error("output_part_mismatch", extra={"task_uid": str(uid),
                                                         "part": part.part})
                return
            yield data


# ----------------------------------------------------------------------------- history


def _event_time(event: Mapping[str, Any]) -> dt.datetime | None:
    """When an Event last happened (events.k8s.io ``eventTime`` or core/v1 timestamps)."""
    created = (event.get("metadata") or {}).get("creationTimestamp")
    for value in (event.get("eventTime"), event.get("lastTimestamp"),
                  event.get("firstTimestamp"), created):
        if value:
            return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return None


@router.get("/{name}/history", response_model=History, responses=_PROBLEMS,
            summary="Control actions and transitions")
def task_history(name: str, principal: ViewerDep, tasks: TasksDep) -> History:
    """The task's Events, oldest first: requests (source ``longtask-api``: who, why) and
    the operator's transitions, plus the last request kept on the task itself."""
    body = _visible(tasks, name, principal)
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    # Within one second (core/v1 timestamps), the server's revision keeps creation order.
    events = sorted(tasks.events(body["metadata"]["uid"]),
                    key=lambda e: (_event_time(e) or epoch,
                                   int((e.get("metadata") or {}).get("resourceVersion") or 0)))
    public = TaskPublic.from_body(body)
    return History(
        name=public.name, created_at=public.created_at, requested_by=public.requested_by,
        reason=public.reason, last_action=public.last_action,
        entries=[HistoryEntry(
            at=_event_time(e),
            source=e.get("reportingComponent") or (e.get("source") or {}).get("component"),
            type=e.get("type") or "Normal", reason=e.get("reason") or "",
            message=e.get("message") or "", count=int(e.get("count") or 1),
        ) for e in events],
    )


# ------------------------------------------------------------------------------- watch


def _sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One Server-Sent Event (WHATWG HTML, "Server-sent events"): ``event``, ``id``, ``data``."""
    lines = [f"event: {event}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode()


@router.get(
    "/{name}/watch", response_class=StreamingResponse, summary="Server-Sent Events",
    responses={200: {"content": {"text/event-stream": {}}}},
)
def watch_task(
    name: str,
    request: Request,
    principal: ViewerDep,
    tasks: TasksDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    timeout: Annotated[float | None, Query(gt=0, description="Seconds before the stream ends")]
        = None,
) -> StreamingResponse:
    """A stream of the task as it changes, until it ends.

    Events: ``task`` (the task, at once and after each change of its spec or status),
    ``end`` (a final phase was reached), ``deleted``, ``timeout`` (the stream's bound,
    ``timeout`` or ``LONGTASK_API_WATCH_MAX_SECONDS``, was reached: reconnect), ``error``.
    A ``: keep-alive`` comment comes every ``LONGTASK_API_WATCH_HEARTBEAT_SECONDS``. 503
    when the API already serves ``LONGTASK_API_MAX_WATCHES`` streams.
    """
    body = _visible(tasks, name, principal)
    slots: threading.BoundedSemaphore = request.app.state.watch_slots
    if not slots.acquire(blocking=False):
        raise ApiProblem(503, "too-many-watches", "Service Unavailable",
                         "too many open watch streams; retry later",
                         headers={"Retry-After": "5"})
    bound = min(timeout or settings.watch_max_seconds, settings.watch_max_seconds)
    metrics.watches.inc()
    slot = _Slot(slots, metrics)
    stream = _in_threads(_watch_stream(tasks, name, body, bound,
                                       settings.watch_heartbeat_seconds), slot)
    # A stream dropped before its first step never runs its finally: free the slot then too.
    weakref.finalize(stream, slot.release)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class _Slot:
    """One of the watch slots, released once whichever way the stream ends."""

    def __init__(self, slots: threading.BoundedSemaphore, metrics: Any) -> None:
        self._slots = slots
        self._metrics = metrics
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._slots.release()
        self._metrics.watches.dec()


async def _in_threads(stream: Iterator[bytes], slot: _Slot) -> AsyncIterator[bytes]:
    """Step the blocking ``stream`` in worker threads; free the slot however it ends.

    When the client goes away the server cancels this generator: the slot is freed at
    once, and the step under way ends by itself within one heartbeat (the watch's window),
    after which nothing steps the stream again and it is collected.
    """
    try:
        while (chunk := await anyio.to_thread.run_sync(next, stream, None,
                                                        abandon_on_cancel=True)) is not None:
            yield chunk
    finally:
        slot.release()


def _watch_stream(tasks: Tasks, name: str, body: dict[str, Any], bound: float,
                  heartbeat: float) -> Iterator[bytes]:
    deadline = time.monotonic() + bound
    public = TaskPublic.from_body(body)
    last = public.model_dump(mode="json", by_alias=True)
    version = body["metadata"]["resourceVersion"]
    yield _sse("task", last, version)
    if public.final:
        yield _sse("end", {"phase": public.phase})
        return
    while (left := deadline - time.monotonic()) > 0:
        window = max(1, math.ceil(min(heartbeat, left)))
        try:
            for kind, obj in tasks.watch(name, version, window):
                version = obj["metadata"].get("resourceVersion", version)
                if kind == "DELETED":
                    yield _sse("deleted", {"name": name}, version)
                    return
                public = TaskPublic.from_body(obj)
                now = public.model_dump(mode="json", by_alias=True)
                if now != last:
                    last = now
                    yield _sse("task", now, version)
                if public.final:
                    yield _sse("end", {"phase": public.phase})
                    return
        except ResourceExpired:
            fresh = tasks.get(name)
            if fresh is None:
                yield _sse("deleted", {"name": name})
                return
            version = fresh["metadata"]["resourceVersion"]
        except KubeUnavailable as exc:
            yield _sse("error", {"detail": str(exc)})
            return
        yield b": keep-alive\n\n"
    yield _sse("timeout", {"seconds": bound})
