"""Pause, resume, terminate and patch a task: each a conditional merge patch of ``spec``
(with who asked and why), then the hold in the runner's record, before the answer."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from longtask.api import control, db
from longtask.api.auth import Principal
from longtask.api.deps import (
    DatabaseDep,
    MetricsDep,
    OperatorDep,
    TasksDep,
)
from longtask.api.kube import Conflict, Invalid, Tasks
from longtask.api.problems import (
    ApiProblem,
    body_error,
    invalid,
    not_found,
)
from longtask.api.schemas import (
    ControlRequest,
    PauseRequest,
    TaskPublic,
    TaskUpdate,
    TerminateRequest,
)
from longtask.api.task_common import (
    CONFLICT_RETRIES,
    PROBLEMS,
    ROUTER,
    invalid_from_server,
    phase_of,
    visible,
)

from longtask import taskrecord
from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY
from longtask.phases import DesiredState, OnTerminate
from longtask.taskrecord import TaskRecord

log = logging.getLogger("longtask.api.tasks")
router = APIRouter(**ROUTER)


def _hold(conn: db.Connection, body: Mapping[str, Any]) -> None:
    """Put the new ``spec.state`` in force in the runner's record before answering.

    A pause or terminate holds the run (no later chunk commits once this returns; it waits
    at most for the chunk in flight); a resume releases it (:func:`longtask.taskrecord.hold`).
    Ends the transaction :func:`longtask.taskrecord.lock_for_control` opened on ``conn``.
    The operator does the same for changes made with kubectl or GitOps.
    """
    state = (body.get("spec") or {}).get("state") or DesiredState.RUNNING
    record = TaskRecord.from_body(body)
    if not taskrecord.hold(conn, record, None if state == DesiredState.RUNNING else str(state)):
        log.warning("hold_not_set", extra={"task": record.name, "state": state})


def _apply(tasks: Tasks, metrics: Any, name: str, principal: Principal, *, action: str,
           target: DesiredState | None, on_terminate: OnTerminate | None = None,
           rate_limit: int | None = control.UNCHANGED,
           bounds: Mapping[str, Any] | None = None,
           fixed: Mapping[str, Any] | None = None, reason: str | None,
           database: db.Database) -> dict[str, Any]:
    """Decide and merge-patch one control request; the task as it stands after it.

    The decision reads the runner's record under its row lock
    (:func:`longtask.taskrecord.lock_for_control`) and keeps the lock through the patch
    and the hold: a run that recorded success is ``Succeeded`` here even before the
    operator says so, and none can record it between the decision and the hold. The patch
    is conditional on the ``resourceVersion`` read, so two racing requests cannot both
    pass the check: the loser re-reads and finds its request in effect (or refused). The
    requested-by and reason annotations go in the same patch as ``spec``.
    """
    for _ in range(CONFLICT_RETRIES):
        body = visible(tasks, name, principal)
        # Only a state, policy or rate limit request on a task not yet ended can depend on
        # the record (and only a state change is held): the others take no database
        # connection. The record's success makes a throttle late, as it does a terminate.
        needs_record = ((target is not None or on_terminate is not None
                         or rate_limit is not control.UNCHANGED or bool(bounds))
                        and not phase_of(body).is_final)
        with (database.connection(autocommit=False) if needs_record
              else contextlib.nullcontext()) as conn:
            record = (taskrecord.lock_for_control(conn, body["metadata"]["uid"])[1]
                      if conn is not None else None)
            updated = _decide_and_patch(tasks, metrics, body, record, principal, action=action,
                                        target=target, on_terminate=on_terminate,
                                        rate_limit=rate_limit, bounds=bounds, fixed=fixed,
                                        reason=reason)
            if updated is None:
                continue
            spec_patch, updated_body = updated
            if "state" in spec_patch:
                assert conn is not None, "a state change is asked of a task not yet ended"
                _hold(conn, updated_body)
        if not spec_patch:
            metrics.control_actions.labels(action, "in_effect").inc()
            return updated_body
        metrics.control_actions.labels(action, "applied").inc()
        what = ", ".join(f"{k}={v}" for k, v in spec_patch.items())
        tasks.post_event(updated_body, "ControlRequested", action.capitalize(),
                         f"{action} ({what}) requested by {principal.subject}"
                         + (f": {reason}" if reason else ""))
        log.info("control_applied", extra={"task": name, "action": action, "spec": spec_patch,
                                           "subject": principal.subject})
        return updated_body
    raise ApiProblem(409, "busy", "Conflict",
                     "the task changed under every attempt to update it; try again")


def _decide_and_patch(tasks: Tasks, metrics: Any, body: dict[str, Any],
                      record: taskrecord.RunnerRecord | None, principal: Principal, *,
                      action: str, target: DesiredState | None,
                      on_terminate: OnTerminate | None, rate_limit: int | None,
                      bounds: Mapping[str, Any] | None, fixed: Mapping[str, Any] | None,
                      reason: str | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(spec fields patched, the task after)``; ``None`` when the task changed since it
    was read (retry). Raises the 409 of a refusal, the 422 of the server's."""
    name = body["metadata"]["name"]
    spec = body.get("spec") or {}
    phase = control.effective_phase(phase_of(body), record)
    decision = control.decide(spec, phase, target, on_terminate, rate_limit, bounds)
    if decision.refusal is not None:
        metrics.control_actions.labels(action, "refused").inc()
        raise ApiProblem(409, "invalid-transition", "Conflict", decision.refusal,
                         extra={"phase": str(phase), "state": spec.get("state")})
    spec_patch = dict(decision.patch)
    for key, value in (fixed or {}).items():
        if spec.get(key) != value:
            spec_patch[key] = value
    if not spec_patch:
        return spec_patch, body
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
        return None
    except Invalid as exc:
        raise invalid_from_server(exc) from None
    if updated is None:
        raise not_found(f"task {name!r}")
    return spec_patch, updated


_CONTROL = dict(status_code=202, response_model=TaskPublic, responses=PROBLEMS)


@router.post("/{name}/pause", summary="Pause at the next checkpoint", **_CONTROL)  # type: ignore[arg-type]
def pause_task(name: str, principal: OperatorDep, tasks: TasksDep, metrics: MetricsDep,
               database: DatabaseDep,
               body: Annotated[PauseRequest | None, Body()] = None) -> TaskPublic:
    """``spec.state: Paused``, with the bounds given (``resumeAt``, ``maxPauseSeconds``,
    ``onMaxPause``: the operator ends the pause at the earlier); 202 with the task. 409 for
    a terminated or ended task; 422 for a ``resumeAt`` without a time zone or in the past."""
    return TaskPublic.from_body(_apply(
        tasks, metrics, name, principal, action="pause", target=DesiredState.PAUSED,
        bounds=body.bounds() if body else None,
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

    Repeating it is not an error (on a RolledBack or Terminated task too); 409 for a
    completed task (its writes are kept, whether the status or only the runner's record
    says so yet), a Failed one, or a terminated one asked for another ``rollback`` choice.
    """
    policy = None
    if body is not None and body.rollback is not None:
        policy = OnTerminate.ROLLBACK if body.rollback else OnTerminate.KEEP
    return TaskPublic.from_body(_apply(
        tasks, metrics, name, principal, action="terminate", target=DesiredState.TERMINATED,
        on_terminate=policy, reason=body.reason if body else None, database=database))


@router.patch(
    "/{name}", response_model=TaskPublic, responses=PROBLEMS,
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
    ``rateLimit`` may be set, changed or removed (``null``) while the task is not final
    (409 once it has ended), and the runner keeps to it from its next chunk; so may the
    bounds (``resumeAt`` only with a pause: 409 otherwise); fields fixed
    at creation by the CRD (``parallelism``) are refused by the server, answered 422 with
    its reason. 200 with the task as it now stands.
    """
    given = update.model_fields_set
    for field in ("state", "on_terminate", "parallelism"):
        if field in given and getattr(update, field) is None:
            alias = TaskUpdate.model_fields[field].alias or field
            raise invalid(f"{alias} cannot be removed", [body_error([alias], "cannot be null")])
    fixed: dict[str, Any] = {}
    if "parallelism" in given:
        fixed["parallelism"] = update.parallelism
    return TaskPublic.from_body(_apply(
        tasks, metrics, name, principal, action="patch", target=update.state,
        on_terminate=update.on_terminate,
        rate_limit=update.rate_limit if "rate_limit" in given else control.UNCHANGED,
        bounds=update.bounds(), fixed=fixed, reason=reason, database=database))
