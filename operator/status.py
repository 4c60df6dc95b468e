"""The status builder: one step of the machine (:class:`Outcome`) turned into the whole new
``status`` (conditions, progress, clocks, job names), the transition's Event and the key's
release (:func:`build`)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from longtask.operator.actions import (
    Action,
    CreateRollbackJob,
    CreateRunJob,
    Decision,
    PostEvent,
    ReleaseKey,
)
from longtask.operator.names import job_name
from longtask.operator.observed import Observed
from longtask.operator.reasons import Reason

from longtask import tasktypes
from longtask.model import (
    Condition,
    ConditionStatus,
    LastAction,
    Progress,
    RollbackProgress,
    Task,
    TaskStatus,
)
from longtask.phases import (
    ConditionType,
    OnTerminate,
    Phase,
    RollbackOutcome,
)
from longtask.taskrecord import RunnerRecord


@dataclass(frozen=True)
class Outcome:
    """One step of the machine: the phase to be in, why, and what to do to get there."""

    phase: Phase
    reason: Reason
    message: str
    actions: tuple[Action, ...] = ()
    requested: bool = False  # the step answers a client's control request
    warning: bool = False
    notes: tuple[PostEvent, ...] = ()  # events besides the transition's own


def requester(action: LastAction | None) -> str:
    """`` (requested by X: why)`` for event messages, or ``""`` when nobody said."""
    if action is None or (action.requested_by is None and action.reason is None):
        return ""
    who = action.requested_by or "an unnamed client"
    return f" (requested by {who}: {action.reason})" if action.reason else f" (requested by {who})"


def key_of(task: Task) -> str | None:
    """The task's concurrency key, ``None`` for a task of an unknown type."""
    try:
        return task.spec.effective_concurrency_key()
    except tasktypes.UnknownTaskType:
        return None


RUNNING_CLOCK = frozenset({Phase.RUNNING, Phase.PAUSING})
_RUNNING_CLOCK = RUNNING_CLOCK


def build(
    task: Task,
    status: TaskStatus,
    observed: Observed,
    now: dt.datetime,
    outcome: Outcome,
    last_action: LastAction | None,
    started: bool,
) -> Decision:
    """Turn one step into the whole new status, the events and the key release."""
    before = status.phase
    phase = outcome.phase
    moved = phase is not before
    actions: list[Action] = list(outcome.actions)
    running, paused = _accrue(status, now)
    creates_run = any(isinstance(a, CreateRunJob) for a in actions)
    creates_rollback = any(isinstance(a, CreateRollbackJob) for a in actions)
    key = key_of(task)

    new = status.model_copy(
        update={
            "phase": phase,
            "message": outcome.message,
            "observed_generation": task.generation,
            "concurrency_key": key,
            "conditions": _conditions(status.conditions, task, outcome, now),
            "progress": _progress(observed.record, phase) or status.progress,
            "rollback": _rollback_progress(observed.record) or status.rollback,
            "job_name": (
                job_name(task.name, "run")
                if creates_run or observed.run_job is not None
                else status.job_name
            ),
            "rollback_job_name": (
                job_name(task.name, "rollback")
                if creates_rollback or observed.rollback_job is not None
                else status.rollback_job_name
            ),
            "queued_at": status.queued_at or (now if phase is Phase.QUEUED else None),
            "started_at": status.started_at or (now if creates_run else None),
            "finished_at": now if moved and phase.is_final else status.finished_at,
            "phase_since": now if moved else status.phase_since,
            "accounted_at": now,
            "running_seconds": running,
            "paused_seconds": paused,
            "rate_limit": task.spec.rate_limit,
            "last_action": last_action,
        }
    )
    if moved:
        what = f"{before or Phase.PENDING} -> {phase}: {outcome.message}"
        who = requester(last_action) if outcome.requested else ""
        actions.append(
            PostEvent("Warning" if outcome.warning else "Normal", outcome.reason, what + who)
        )
    actions.extend(outcome.notes)
    if moved and phase.is_final and started and key is not None:
        actions.append(ReleaseKey(key))
    return Decision(new, tuple(actions))


def _accrue(status: TaskStatus, now: dt.datetime) -> tuple[int, int]:
    """``(runningSeconds, pausedSeconds)`` brought up to ``now`` by the phase held since."""
    running, paused = status.running_seconds, status.paused_seconds
    if status.accounted_at is None or status.phase is None:
        return running, paused
    elapsed = max(0, int((now - status.accounted_at).total_seconds()))
    if status.phase in _RUNNING_CLOCK:
        running += elapsed
    elif status.phase is Phase.PAUSED and status.started_at is not None:
        paused += elapsed
    return running, paused


def _progress(record: RunnerRecord | None, phase: Phase) -> Progress | None:
    if record is None:
        return None
    succeeded = phase is Phase.SUCCEEDED
    percent: int | None = None
    if succeeded:
        percent = 100
    elif record.total:
        percent = min(99, math.floor(100 * record.done / record.total))
    eta = record.eta_seconds
    return Progress(
        total=record.total,
        done=record.done,
        row_errors=record.row_errors,
        rate_per_second=record.rate_per_second,
        eta_seconds=0 if succeeded else (round(eta) if eta is not None else None),
        percent=percent,
    )


def _rollback_progress(record: RunnerRecord | None) -> RollbackProgress | None:
    if record is None or record.rollback_status is RollbackOutcome.NONE:
        return None
    return RollbackProgress(
        total=record.rollback_total,
        done=record.rollback_done,
        conflicts=record.rollback_conflicts,
    )


# Per phase: (Progressing, Paused, Succeeded) condition statuses.
_CONDITION_TABLE: dict[Phase, tuple[ConditionStatus, ConditionStatus, ConditionStatus]] = {
    Phase.PENDING: ("False", "False", "Unknown"),
    Phase.QUEUED: ("False", "False", "Unknown"),
    Phase.RUNNING: ("True", "False", "Unknown"),
    Phase.PAUSING: ("True", "False", "Unknown"),
    Phase.PAUSED: ("False", "True", "Unknown"),
    Phase.TERMINATING: ("True", "False", "Unknown"),
    Phase.ROLLING_BACK: ("True", "False", "False"),
    Phase.SUCCEEDED: ("False", "False", "True"),
    Phase.FAILED: ("False", "False", "False"),
    Phase.ROLLED_BACK: ("False", "False", "False"),
    Phase.TERMINATED: ("False", "False", "False"),
}

# Where ``RolledBack`` is present: a rollback was asked for (or its absence is news).
_ROLLED_BACK: dict[Phase, ConditionStatus] = {
    Phase.ROLLING_BACK: "False",
    Phase.ROLLED_BACK: "True",
}


def _conditions(
    current: Sequence[Condition], task: Task, outcome: Outcome, now: dt.datetime
) -> tuple[Condition, ...]:
    """The condition set for the outcome; ``lastTransitionTime`` kept where status is kept.

    Every condition carries the step's reason and message, so each answers "why" alike.
    """
    progressing, paused, succeeded = _CONDITION_TABLE[outcome.phase]
    wanted: list[tuple[ConditionType, ConditionStatus]] = [
        (ConditionType.PROGRESSING, progressing),
        (ConditionType.PAUSED, paused),
        (ConditionType.SUCCEEDED, succeeded),
    ]
    rolled_back = _ROLLED_BACK.get(outcome.phase)
    if outcome.phase is Phase.TERMINATING and task.spec.on_terminate is OnTerminate.ROLLBACK:
        rolled_back = "False"
    if outcome.reason is Reason.ROLLBACK_FAILED:
        rolled_back = "False"
    if rolled_back is not None:
        wanted.append((ConditionType.ROLLED_BACK, rolled_back))
    old = {c.type: c for c in current}
    result = []
    for type_, state in wanted:
        previous = old.get(type_)
        since = previous.last_transition_time if previous and previous.status == state else now
        result.append(
            Condition(
                type=type_,
                status=state,
                reason=outcome.reason,
                message=outcome.message,
                last_transition_time=since,
                observed_generation=task.generation,
            )
        )
    return tuple(result)
