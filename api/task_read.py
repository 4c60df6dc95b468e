"""``GET /v1/tasks``, ``GET /v1/tasks/{name}``, its row errors and its history: reading the
LongTask, the runner's stored row errors and the task's Events."""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from longtask.api import db
from longtask.api.auth import Principal
from longtask.api.deps import (
    DatabaseDep,
    SettingsDep,
    TasksDep,
    ViewerDep,
)
from longtask.api.kube import Tasks
from longtask.api.schemas import (
    DNS_LABEL,
    ConflictList,
    ConflictPublic,
    History,
    HistoryEntry,
    RowErrorList,
    RowErrorPublic,
    TaskList,
    TaskPublic,
)
from longtask.api.task_common import (
    PROBLEMS,
    ROUTER,
    decode_cursor,
    encode_cursor,
    next_link,
    phase_of,
    visible,
)

from longtask import tasktypes
from longtask.constants import LABEL_ORGANIZATION, LABEL_VALUE_MAX
from longtask.phases import Phase

log = logging.getLogger("longtask.api.tasks")
router = APIRouter(**ROUTER)


@router.get("", response_model=TaskList, responses=PROBLEMS, summary="List tasks")
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
    after = decode_cursor(cursor, (str, str)) if cursor else None
    rows = []
    for body in _candidates(tasks, principal, organization):
        spec = body.get("spec") or {}
        org = str(spec.get("organization"))
        if not principal.may_use(org) or (organization and org not in organization):
            continue
        if type and spec.get("type") not in type:
            continue
        if phase and phase_of(body) not in phase:
            continue
        key = [body["metadata"]["creationTimestamp"], body["metadata"]["name"]]
        if after is not None and key >= after:
            continue
        rows.append((key, body))
    rows.sort(key=lambda r: r[0], reverse=True)
    page = rows[:size]
    next_cursor = encode_cursor(page[-1][0]) if len(rows) > size else None
    next_link(request, next_cursor, response)
    return TaskList(items=[TaskPublic.from_body(b) for _, b in page], next=next_cursor)


_SLUG = re.compile(DNS_LABEL)


def _candidates(tasks: Tasks, principal: Principal,
                organization: list[str] | None) -> list[dict[str, Any]]:
    """The LongTasks a list may show: for a caller of some organizations, those labelled
    with one of them (the API labels what it creates) and those without the label (made
    with kubectl or GitOps), not the whole namespace; each is still checked by its spec."""
    if principal.all_organizations and not organization:
        return tasks.list_all()
    # Only slugs can be organizations (the CRD's pattern), and only they are label values:
    # another filter value selects nothing, and must not reach the selector.
    wanted = sorted(o for o in (organization or principal.organizations)
                    if principal.may_use(o) and len(o) <= LABEL_VALUE_MAX
                    and _SLUG.fullmatch(o))
    found = {b["metadata"]["uid"]: b for b in tasks.list_all(f"!{LABEL_ORGANIZATION}")}
    if wanted:
        selector = f"{LABEL_ORGANIZATION} in ({','.join(wanted)})"
        found.update((b["metadata"]["uid"], b) for b in tasks.list_all(selector))
    return list(found.values())


@router.get("/{name}", response_model=TaskPublic, responses=PROBLEMS, summary="A task")
def get_task(name: str, principal: ViewerDep, tasks: TasksDep) -> TaskPublic:
    """Spec, phase, conditions, progress (with ETA), timestamps, last control action."""
    return TaskPublic.from_body(visible(tasks, name, principal))


@router.get("/{name}/errors", response_model=RowErrorList, responses=PROBLEMS,
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
    body = visible(tasks, name, principal)
    uid = uuid.UUID(body["metadata"]["uid"])
    after = decode_cursor(cursor, (int, int)) if cursor else [0, 0]
    with database.connection() as conn:
        total, stored = db.row_error_counts(conn, uid)
        rows = db.row_errors_page(conn, uid, (after[0], after[1]), limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor([page[-1].line, page[-1].id]) if len(rows) > limit else None
    next_link(request, next_cursor, response)
    return RowErrorList(
        total=total, stored=stored, next=next_cursor,
        items=[RowErrorPublic(line=r.line, column=r.column, reason=r.reason, value=r.value)
               for r in page])


@router.get("/{name}/conflicts", response_model=ConflictList, responses=PROBLEMS,
            summary="Rows the rollback left, and why")
def task_conflicts(
    name: str,
    request: Request,
    response: Response,
    principal: ViewerDep,
    tasks: TasksDep,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query()] = None,
) -> ConflictList:
    """The rows a rollback did not remove or restore, because someone else changed them or
    refers to them, or they belong with such a row (empty before a rollback)."""
    body = visible(tasks, name, principal)
    uid = uuid.UUID(body["metadata"]["uid"])
    after: list[Any] = decode_cursor(cursor, (str, int)) if cursor else ["", 0]
    with database.connection() as conn:
        total, rows = db.conflicts_page(conn, uid, (after[0], after[1]), limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor([page[-1].table, page[-1].row_id]) if len(rows) > limit else None
    next_link(request, next_cursor, response)
    return ConflictList(total=total, next=next_cursor, items=[
        ConflictPublic(table=r.table, id=r.row_id, reason=r.reason) for r in page])


def _event_time(event: Mapping[str, Any]) -> dt.datetime | None:
    """When an Event last happened (events.k8s.io ``eventTime`` or core/v1 timestamps)."""
    created = (event.get("metadata") or {}).get("creationTimestamp")
    for value in (event.get("eventTime"), event.get("lastTimestamp"),
                  event.get("firstTimestamp"), created):
        if value:
            return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return None


@router.get("/{name}/history", response_model=History, responses=PROBLEMS,
            summary="Control actions and transitions")
def task_history(name: str, principal: ViewerDep, tasks: TasksDep) -> History:
    """The task's Events, oldest first: requests (source ``longtask-api``: who, why) and
    the operator's transitions, plus the last request kept on the task itself."""
    body = visible(tasks, name, principal)
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
