"""``DELETE /v1/tasks/{name}``: delete a LongTask, under the rule that deleting is not
undoing (:func:`longtask.api.control.decide_delete`); audited like the control requests."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from longtask.api import control
from longtask.api.deps import DatabaseDep, MetricsDep, OperatorDep, TasksDep
from longtask.api.kube import Conflict
from longtask.api.problems import ApiProblem
from longtask.api.schemas import TaskPublic
from longtask.api.task_common import CONFLICT_RETRIES, PROBLEMS, ROUTER, phase_of, visible

from longtask import taskrecord
from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY
from longtask.taskrecord import TaskRecord

log = logging.getLogger("longtask.api.tasks")
router = APIRouter(**ROUTER)


@router.delete(
    "/{name}", status_code=202, response_model=TaskPublic,
    responses={**PROBLEMS, 204: {"description": "The task is gone (no finalizer kept it)"}},
    summary="Delete the task; what it wrote stays",
)
def delete_task(
    name: str,
    principal: OperatorDep,
    tasks: TasksDep,
    metrics: MetricsDep,
    database: DatabaseDep,
    keep_writes: Annotated[bool, Query(
        alias="keepWrites",
        description="Delete a task that may still run or has rows a rollback could undo, "
                    "knowing those rows stay")] = False,
    reason: Annotated[str | None, Query(max_length=1024, description="Why")] = None,
) -> Any:
    """Delete the LongTask; the operator's finalizer stops its Jobs, then it is gone.

    202 with the task (``deleting: true``) while the finalizer keeps it, 204 when it is
    gone at once; a task already being deleted is 202 and changes nothing. 409 (reason,
    ``phase``) for a task that has run and is not in a final phase, unless
    ``keepWrites=true``: deleting does not undo its rows (terminate it and delete it once
    it is RolledBack). A task not in a final phase is held in the runner's record before
    the answer, so no chunk commits after it, as with a terminate.
    """
    for _ in range(CONFLICT_RETRIES):
        body = visible(tasks, name, principal)
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            metrics.control_actions.labels("delete", "in_effect").inc()
            return TaskPublic.from_body(body)
        with database.connection(autocommit=False) as conn:
            _, record = taskrecord.lock_for_control(conn, meta["uid"])
            phase = control.effective_phase(phase_of(body), record)
            refusal = control.decide_delete(
                phase, control.has_run(body.get("status") or {}, record), keep_writes,
                record.done if record is not None else 0)
            if refusal is not None:
                metrics.control_actions.labels("delete", "refused").inc()
                raise ApiProblem(409, "delete-would-keep-writes", "Conflict", refusal,
                                 extra={"phase": str(phase),
                                        "state": (body.get("spec") or {}).get("state")})
            try:
                deleted = tasks.delete(name, meta["resourceVersion"])
            except Conflict:
                continue
            if not phase.is_final and not taskrecord.hold(
                    conn, TaskRecord.from_body(body), "Terminated"):
                log.warning("hold_not_set", extra={"task": name, "state": "Terminated"})
        return _audited(tasks, metrics, body, deleted, principal.subject, reason, keep_writes)
    raise ApiProblem(409, "busy", "Conflict",
                     "the task changed under every attempt to delete it; try again")


def _audited(tasks: Any, metrics: Any, body: dict[str, Any], deleted: dict[str, Any] | None,
             subject: str, reason: str | None, keep_writes: bool) -> Any:
    """Record who deleted the task and why (annotations while it stays, an Event, a log
    line); the answer: 202 with the task, or 204 once it is gone."""
    name = body["metadata"]["name"]
    metrics.control_actions.labels("delete", "applied").inc()
    current = deleted
    if deleted is not None:
        current = tasks.patch(name, {"metadata": {"annotations": {
            ANNOTATION_REQUESTED_BY: subject, ANNOTATION_REASON: reason}}}) or None
    kept = ", its rows kept (keepWrites)" if keep_writes else ""
    tasks.post_event(body, "DeleteRequested", "Delete",
                     f"delete requested by {subject}{kept}" + (f": {reason}" if reason else ""))
    log.info("delete_applied", extra={"task": name, "subject": subject,
                                      "keep_writes": keep_writes})
    if current is None:
        return Response(status_code=204)
    return TaskPublic.from_body(current)
