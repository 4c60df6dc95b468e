"""The LongTask state machine: one pure function from what is wanted and seen to what to do.

``decide(task, status, observed, now) -> Decision``. A handler parses the LongTask, gathers
:class:`Observed` (the run and rollback Jobs, the task's live runner pods, the runner's
record in ``longtask.tasks``, the concurrency-key situation from :func:`admit`), calls
:func:`decide`, writes ``Decision.status`` (before the actions: a task that holds its key
is visible as a holder before its Job exists) and then carries out ``Decision.actions``.
Every action is idempotent, so a decision repeated after a crash changes nothing twice.

Rules (``operator/README.md``, ``docs/architecture.md``), and the choices made where the
requirements are silent:

* Success and failure come from the runner's record (``run_status``), not from the Job: a
  pod stopped by a pause is not a finished task. A Job that *failed* while the record is not
  ``succeeded`` fails the task; a Job that *completed* while the record does not say
  ``succeeded`` fails it too (``RecordMismatch``): the runner exits 0 only after recording
  success, so the two disagree only when something is badly wrong.
* The hold is the moment a pause or terminate takes effect: ``HoldRun`` comes before the
  ``SuspendJob`` or ``DeleteJob`` of the run, and once it is in force in the runner's record
  no later chunk commits (the API sets the same hold before it answers a control request;
  this one covers kubectl and GitOps). ``ReleaseRun`` comes before ``ResumeJob`` and
  ``CreateRunJob``. A task paused or terminated before it started has no runner to hold.
* Pause suspends the Job; the task is ``Paused`` once no runner pod is left. With no runner
  process alive the last committed chunk is the checkpoint (each chunk commits its writes
  and its cursor in one transaction), so no pod left means the checkpoint is durable.
  ``run_status`` still ``running`` then only says the runner did not record its own stop
  (killed after the grace period): reason ``StoppedWithoutRecord`` instead of
  ``StoppedAtCheckpoint``.
* Terminate deletes the run Job (foreground propagation: the Job object stays until its pods
  are gone) and waits until no runner pod is left; then ``Terminated`` (``onTerminate:
  Keep``) or the rollback Job and ``RollingBack`` → ``RolledBack``. The rollback Job has one
  deterministic name and is only made from ``Terminating`` or, if it disappeared, again
  under the same name in ``RollingBack``: one rollback Job at most.
* A terminate is sticky: once ``Terminating``, nothing but the rollback's end leaves it; a
  later ``spec.state`` (which the CRD already refuses) is ignored with an event.
* A task whose runner recorded success before the rollback began is ``Succeeded``: a
  completed task is not rolled back by a late terminate (reason
  ``CompletedBeforeTerminate``). A runner *failure* racing a terminate does not stop the
  terminate: the rollback removes the failed run's partial writes.
* A task that never started (no run Job, no runner record) and is terminated ends at once,
  with no rollback Job: ``RolledBack`` (reason ``NothingWritten``) under ``onTerminate:
  Rollback``, ``Terminated`` under ``Keep``, so the final phase always follows the policy.
* A task paused before it started becomes ``Paused`` without a Job and does not hold its
  concurrency key; resumed, it waits for the key again in its original place (oldest first).
* Concurrency keys: a task holds its key from its start until it reaches a final phase
  (a paused task keeps it; a terminated one frees it when its rollback ends). Keys are
  compared within one namespace.
* Final phases never change; a control request on a final task is ignored with an event.
* ``runningSeconds`` counts ``Running`` and ``Pausing`` (a runner is working or finishing
  its chunk), ``pausedSeconds`` counts ``Paused`` after a start; both whole seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from longtask.operator.names import job_name

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
    DesiredState,
    OnTerminate,
    Phase,
    RollbackOutcome,
    RunOutcome,
)
from longtask.taskrecord import RunnerRecord

# --------------------------------------------------------------------------- observed


@dataclass(frozen=True)
class JobState:
    """What the operator saw of one Job (run or rollback).

    ``suspended`` is ``spec.suspend``; ``deleting`` is a set ``deletionTimestamp``;
    ``complete``/``failed`` are the Job's ``Complete``/``Failed`` conditions being ``True``
    (``failure_reason`` is that condition's reason, e.g. ``BackoffLimitExceeded`` or
    ``PodFailurePolicy``); ``active`` is ``status.active``.
    """

    name: str
    suspended: bool = False
    deleting: bool = False
    complete: bool = False
    failed: bool = False
    failure_reason: str | None = None
    failure_message: str | None = None
    active: int = 0

    @classmethod
    def from_body(cls, job: Mapping[str, Any]) -> JobState:
        """Read a ``batch/v1`` Job object as the API server returns it."""
        meta = job.get("metadata") or {}
        spec = job.get("spec") or {}
        status = job.get("status") or {}
        true = {
            c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"
        }
        failed = true.get("Failed")
        return cls(
            name=meta["name"],
            suspended=bool(spec.get("suspend")),
            deleting=meta.get("deletionTimestamp") is not None,
            complete="Complete" in true,
            failed=failed is not None,
            failure_reason=failed.get("reason") if failed else None,
            failure_message=failed.get("message") if failed else None,
            active=int(status.get("active") or 0),
        )


@dataclass(frozen=True)
class Observed:
    """Everything outside the LongTask that a decision depends on.

    ``runner_pods``: the task's pods (either mode) not yet in phase Succeeded or Failed,
    counted from a fresh list (a pod being deleted still counts until the kubelet confirms
    its process is gone). ``record``: ``None`` while the runner has written no row.
    ``admitted``: :func:`admit` named this task for its concurrency key (only read before a
    task starts); ``key_holder`` and ``queue_position`` (1 = next) are for messages.
    """

    run_job: JobState | None = None
    rollback_job: JobState | None = None
    runner_pods: int = 0
    record: RunnerRecord | None = None
    admitted: bool = False
    key_holder: str | None = None
    queue_position: int | None = None


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class CreateRunJob:
    """Create the run Job (``manifests.build_run_job``); ``AlreadyExists`` is success."""

    name: str
    suspend: bool = False


@dataclass(frozen=True)
class SuspendJob:
    """Patch ``spec.suspend: true``: the Job controller stops the runner pod (SIGTERM)."""

    name: str


@dataclass(frozen=True)
class ResumeJob:
    """Patch ``spec.suspend: false``: the Job controller starts a runner pod again."""

    name: str


Propagation = Literal["Foreground", "Background"]


@dataclass(frozen=True)
class DeleteJob:
    """Delete a Job with the given propagation policy; ``NotFound`` is success."""

    name: str
    propagation: Propagation = "Foreground"


@dataclass(frozen=True)
class CreateRollbackJob:
    """Create the rollback Job (``manifests.build_rollback_job``); ``AlreadyExists`` is success."""

    name: str


EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class PostEvent:
    """Post a Kubernetes Event on the LongTask (``reason`` is CamelCase, as in core/v1)."""

    type: EventType
    reason: str
    message: str


Hold = Literal["Paused", "Terminated"]


@dataclass(frozen=True)
class HoldRun:
    """Hold the run in the runner's record (``longtask.tasks.hold``; see
    :func:`longtask.taskrecord.hold`): once it is in force no later chunk of the run commits
    and no runner takes the lease. The pause or terminate takes effect here, before the
    ``SuspendJob`` or ``DeleteJob`` that follows it stops the pod."""

    hold: Hold


@dataclass(frozen=True)
class ReleaseRun:
    """Clear the record's hold, so a runner may take the lease again; comes before the
    ``ResumeJob`` or ``CreateRunJob`` that starts one."""


@dataclass(frozen=True)
class ReleaseKey:
    """The task no longer holds ``key``: reconcile the tasks waiting for it now."""

    key: str


Action = (
    CreateRunJob | SuspendJob | ResumeJob | DeleteJob | CreateRollbackJob | HoldRun | ReleaseRun
    | PostEvent | ReleaseKey
)


@dataclass(frozen=True)
class Decision:
    """The new ``status`` (whole; see ``model.status_patch``) and the actions, in order."""

    status: TaskStatus
    actions: tuple[Action, ...] = ()


class Reason(StrEnum):
    """``reason`` of conditions and events (CamelCase, ``metav1.Condition`` pattern)."""

    # before the start
    WAITING_FOR_KEY = "WaitingForKey"
    PAUSED_BEFORE_START = "PausedBeforeStart"
    INVALID_PARAMS = "InvalidParams"
    # running
    STARTED = "Started"
    RUNNING = "Running"
    RESUMED = "Resumed"
    JOB_RECREATED = "JobRecreated"
    WAITING_FOR_OLD_POD = "WaitingForOldPod"
    # pausing
    PAUSE_REQUESTED = "PauseRequested"
    STOPPED_AT_CHECKPOINT = "StoppedAtCheckpoint"
    STOPPED_WITHOUT_RECORD = "StoppedWithoutRecord"
    # outcomes of the run
    COMPLETED = "Completed"
    COMPLETED_BEFORE_TERMINATE = "CompletedBeforeTerminate"
    RUNNER_FAILED = "RunnerFailed"
    JOB_FAILED = "JobFailed"
    RECORD_MISMATCH = "RecordMismatch"
    # terminate and rollback
    TERMINATE_REQUESTED = "TerminateRequested"
    TERMINATED_KEPT = "TerminatedKept"
    TERMINATED_BEFORE_START = "TerminatedBeforeStart"
    NOTHING_WRITTEN = "NothingWritten"
    ROLLBACK_STARTED = "RollbackStarted"
    ROLLBACK_RUNNING = "RollbackRunning"
    ROLLBACK_JOB_RECREATED = "RollbackJobRecreated"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_FAILED = "RollbackFailed"
    ROLLBACK_INTERRUPTED = "RollbackInterrupted"
    # requests that change nothing
    ACTION_IGNORED = "ActionIgnored"


@dataclass(frozen=True)
class _Outcome:
    """One step of the machine: the phase to be in, why, and what to do to get there."""

    phase: Phase
    reason: Reason
    message: str
    actions: tuple[Action, ...] = ()
    requested: bool = False  # the step answers a client's control request
    warning: bool = False
    notes: tuple[PostEvent, ...] = ()  # events besides the transition's own


# --------------------------------------------------------------------------- admission


@dataclass(frozen=True)
class KeyMember:
    """One LongTask sharing a concurrency key, as the admission sees it.

    ``started``: ``status.startedAt`` is set or the task's run Job exists (the handler must
    check both, so a task whose status write was lost still counts as a holder).
    """

    name: str
    created_at: dt.datetime
    phase: Phase | None
    state: DesiredState
    started: bool

    @property
    def holds_key(self) -> bool:
        """Started and not final: running, pausing, paused, terminating or rolling back."""
        return self.started and not (self.phase is not None and self.phase.is_final)

    @property
    def waiting(self) -> bool:
        """Not started, not final, and asked to run (a task paused before its start is not)."""
        final = self.phase is not None and self.phase.is_final
        return not self.started and not final and self.state is DesiredState.RUNNING


@dataclass(frozen=True)
class KeyQueue:
    """The tasks of one key: who holds it, who waits (oldest first), who is next."""

    holders: tuple[KeyMember, ...]
    waiting: tuple[KeyMember, ...]
    admitted: tuple[str, ...]

    def position(self, name: str) -> int | None:
        """1-based place of ``name`` among the waiting tasks, ``None`` if it is not waiting."""
        names = [m.name for m in self.waiting]
        return names.index(name) + 1 if name in names else None


def admit(waiting: Sequence[KeyMember], holders: Sequence[KeyMember]) -> list[str]:
    """Names to admit under one key: the oldest waiting task when nobody holds the key.

    Oldest is by ``creationTimestamp``, then name (timestamps have one-second precision).
    At most one name: tasks sharing a key run one at a time.
    """
    if holders or not waiting:
        return []
    return [min(waiting, key=lambda m: (m.created_at, m.name)).name]


def key_queue(members: Iterable[KeyMember]) -> KeyQueue:
    """Sort one key's members into holders and waiting tasks, and apply :func:`admit`."""
    members = list(members)
    holders = tuple(m for m in members if m.holds_key)
    waiting = tuple(sorted((m for m in members if m.waiting), key=lambda m: (m.created_at, m.name)))
    return KeyQueue(holders, waiting, tuple(admit(waiting, holders)))


# --------------------------------------------------------------------------- decide


def decide(task: Task, status: TaskStatus, observed: Observed, now: dt.datetime) -> Decision:
    """The next status and actions for one LongTask. Pure; ``now`` is a timezone-aware time.

    Never raises for any combination of inputs: an invalid ``spec.params`` becomes phase
    ``Failed`` (reason ``InvalidParams``).
    """
    now = now.astimezone(dt.UTC).replace(microsecond=0)  # metav1.Time has whole seconds
    phase = status.phase or Phase.PENDING
    started = _started(status, observed)
    last_action, new_request = _control_request(task, status, now)

    if phase.is_final:
        return _final(task, status, now, last_action, new_request)
    if not started:
        outcome = _before_start(task, status, observed)
    elif phase in _TERMINATING or task.spec.state is DesiredState.TERMINATED:
        outcome = _terminate(task, status, observed)
        if new_request and task.spec.state is not DesiredState.TERMINATED:
            why = "a terminated task cannot be resumed or paused; create a new LongTask"
            outcome = _with_note(outcome, _ignored(task, phase, why))
    elif task.spec.state is DesiredState.PAUSED:
        outcome = _pause(task, observed)
    else:
        outcome = _run(task, status, observed)
    return _apply(task, status, observed, now, outcome, last_action, started)


_TERMINATING = frozenset({Phase.TERMINATING, Phase.ROLLING_BACK})


def _started(status: TaskStatus, observed: Observed) -> bool:
    """Whether the task ever ran: evidence in status, in the cluster or in the database."""
    record = observed.record
    return (
        status.started_at is not None
        or observed.run_job is not None
        or observed.rollback_job is not None
        or observed.runner_pods > 0
        or (record is not None and record.run_status is not RunOutcome.PENDING)
    )


def _control_request(
    task: Task, status: TaskStatus, now: dt.datetime
) -> tuple[LastAction | None, bool]:
    """``status.lastAction`` after this reconcile, and whether ``spec.state`` is a new request.

    A task is created ``Running`` without a request; any other ``spec.state`` than the last
    one seen is a request, attributed to the annotations the resource carries now.
    """
    seen = status.last_action.state if status.last_action else DesiredState.RUNNING
    if task.spec.state is seen:
        return status.last_action, False
    action = LastAction(
        state=task.spec.state,
        requested_by=task.requested_by,
        reason=task.request_reason,
        at=now,
    )
    return action, True


def _requester(action: LastAction | None) -> str:
    """`` (requested by X: why)`` for event messages, or ``""`` when nobody said."""
    if action is None or (action.requested_by is None and action.reason is None):
        return ""
    who = action.requested_by or "an unnamed client"
    return f" (requested by {who}: {action.reason})" if action.reason else f" (requested by {who})"


def _key(task: Task) -> str | None:
    try:
        return task.spec.effective_concurrency_key()
    except tasktypes.UnknownTaskType:
        return None


def _ignored(task: Task, phase: Phase, why: str) -> PostEvent:
    return PostEvent(
        "Normal",
        Reason.ACTION_IGNORED,
        f"spec.state {task.spec.state} ignored: the task is {phase}; {why}",
    )


def _with_note(outcome: _Outcome, note: PostEvent) -> _Outcome:
    return dataclasses.replace(outcome, notes=(*outcome.notes, note))


def _final(
    task: Task,
    status: TaskStatus,
    now: dt.datetime,
    last_action: LastAction | None,
    new_request: bool,
) -> Decision:
    """A final phase never changes; a request is recorded and answered with an event."""
    phase = status.phase or Phase.PENDING
    actions: list[Action] = []
    message = status.message
    if new_request:
        if phase is Phase.SUCCEEDED and task.spec.state is DesiredState.TERMINATED:
            why = "a completed task is not rolled back; its writes are kept"
            message = f"{status.message or 'Succeeded'}; a terminate after completion was ignored"
        else:
            why = "a finished task takes no control action"
        actions.append(_ignored(task, phase, why))
    new = status.model_copy(
        update={
            "last_action": last_action,
            "message": message,
            "observed_generation": task.generation,
        }
    )
    return Decision(new, tuple(actions))


def _before_start(task: Task, status: TaskStatus, observed: Observed) -> _Outcome:
    """No Job, no runner record: nothing was written, so every exit is immediate."""
    spec = task.spec
    key = _key(task)
    if spec.state is DesiredState.TERMINATED:
        if spec.on_terminate is OnTerminate.ROLLBACK:
            return _Outcome(
                Phase.ROLLED_BACK,
                Reason.NOTHING_WRITTEN,
                "terminated before it started: nothing was written, so nothing to roll back",
                requested=True,
            )
        return _Outcome(
            Phase.TERMINATED,
            Reason.TERMINATED_BEFORE_START,
            "terminated before it started: nothing was written",
            requested=True,
        )
    if spec.state is DesiredState.PAUSED:
        return _Outcome(
            Phase.PAUSED,
            Reason.PAUSED_BEFORE_START,
            f"paused before it started; it does not hold concurrency key {key!r} and takes "
            "its place in the queue again when resumed",
            requested=True,
        )
    try:
        tasktypes.parse_params(spec.type, spec.params)
    except (tasktypes.ParamsError, tasktypes.UnknownTaskType) as exc:
        return _Outcome(
            Phase.FAILED,
            Reason.INVALID_PARAMS,
            f"{exc}; fix spec.params in a new LongTask",
            warning=True,
        )
    resumed = status.phase is Phase.PAUSED
    if not observed.admitted:
        holder = f", held by {observed.key_holder}" if observed.key_holder else ""
        place = f" (position {observed.queue_position})" if observed.queue_position else ""
        return _Outcome(
            Phase.QUEUED,
            Reason.WAITING_FOR_KEY,
            f"waiting for concurrency key {key!r}{holder}{place}",
            requested=resumed,
        )
    name = job_name(task.name, "run")
    return _Outcome(
        Phase.RUNNING,
        Reason.RESUMED if resumed else Reason.STARTED,
        f"run Job {name} created",
        actions=(ReleaseRun(), CreateRunJob(name, suspend=False)),
        requested=resumed,
    )


def _run_outcome(observed: Observed) -> _Outcome | None:
    """The run's end if the runner's record (or a failed Job) says it ended, else ``None``."""
    record = observed.record
    job = observed.run_job
    if record is not None and record.run_status is RunOutcome.SUCCEEDED:
        errors = f", {record.row_errors} row errors" if record.row_errors else ""
        return _Outcome(Phase.SUCCEEDED, Reason.COMPLETED, f"completed: {record.done} rows{errors}")
    if record is not None and record.run_status is RunOutcome.FAILED:
        return _Outcome(
            Phase.FAILED,
            Reason.RUNNER_FAILED,
            record.message or "the runner recorded a failure without a message",
            warning=True,
        )
    if job is not None and job.failed:
        detail = (record.message if record else None) or job.failure_message or "no message"
        return _Outcome(
            Phase.FAILED,
            Reason.JOB_FAILED,
            f"run Job {job.name} failed ({job.failure_reason or 'no reason'}): {detail}",
            warning=True,
        )
    if job is not None and job.complete:
        said = record.run_status if record else "nothing"
        return _Outcome(
            Phase.FAILED,
            Reason.RECORD_MISMATCH,
            f"run Job {job.name} completed but the runner's record says {said}, not succeeded",
            warning=True,
        )
    return None


def _run(task: Task, status: TaskStatus, observed: Observed) -> _Outcome:
    """Started and asked to run: resume a suspended Job, replace a lost one, report progress."""
    ended = _run_outcome(observed)
    if ended is not None:
        return ended
    job = observed.run_job
    name = job_name(task.name, "run")
    if job is None or job.deleting:
        if observed.runner_pods > 0 or job is not None:
            return _Outcome(
                Phase.RUNNING,
                Reason.WAITING_FOR_OLD_POD,
                f"run Job {name} is gone or going; waiting for the old runner pod to stop "
                "before creating it again",
            )
        return _Outcome(
            Phase.RUNNING,
            Reason.JOB_RECREATED,
            f"run Job {name} was missing and is created again; the runner resumes from its "
            "last checkpoint",
            actions=(ReleaseRun(), CreateRunJob(name, suspend=False)),
            warning=True,
        )
    if job.suspended:
        return _Outcome(
            Phase.RUNNING,
            Reason.RESUMED,
            "resumed: the runner continues from its last checkpoint",
            actions=(ReleaseRun(), ResumeJob(job.name)),
            requested=True,
        )
    return _Outcome(Phase.RUNNING, Reason.RUNNING, _progress_text(observed.record))


def _pause(task: Task, observed: Observed) -> _Outcome:
    """Started and asked to pause: suspend the Job, then wait until no runner pod is left."""
    ended = _run_outcome(observed)
    if ended is not None:
        return ended
    job = observed.run_job
    actions: tuple[Action, ...] = ()
    if job is not None and not job.suspended and not job.deleting:
        actions = (HoldRun("Paused"), SuspendJob(job.name))
    if actions or observed.runner_pods > 0:
        pods = observed.runner_pods
        return _Outcome(
            Phase.PAUSING,
            Reason.PAUSE_REQUESTED,
            f"stopping the runner at its next checkpoint ({pods} runner pod(s) left)",
            actions=actions,
            requested=True,
        )
    record = observed.record
    if record is not None and record.run_status is RunOutcome.RUNNING:
        return _Outcome(
            Phase.PAUSED,
            Reason.STOPPED_WITHOUT_RECORD,
            f"paused at {record.done} rows; the runner stopped without recording it (killed "
            "after its grace period?); it resumes from its last committed checkpoint",
            requested=True,
            warning=True,
        )
    done = f" at {record.done} rows" if record is not None else ""
    return _Outcome(
        Phase.PAUSED,
        Reason.STOPPED_AT_CHECKPOINT,
        f"paused{done}; no runner pod is left and the checkpoint is committed",
        requested=True,
    )


def _terminate(task: Task, status: TaskStatus, observed: Observed) -> _Outcome:
    """Started and terminated: stop the runner, then keep the writes or roll them back."""
    if status.phase is Phase.ROLLING_BACK:
        return _rolling_back(task, observed)
    record = observed.record
    if record is not None and record.run_status is RunOutcome.SUCCEEDED:
        return _Outcome(
            Phase.SUCCEEDED,
            Reason.COMPLETED_BEFORE_TERMINATE,
            f"completed ({record.done} rows) before the terminate could stop it; a completed "
            "task is not rolled back, its writes are kept",
            requested=True,
        )
    job = observed.run_job
    actions: tuple[Action, ...] = ()
    if job is not None and not job.deleting:
        actions = (DeleteJob(job.name, "Foreground"),)
        if task.spec.state is DesiredState.TERMINATED:
            actions = (HoldRun("Terminated"), *actions)
    if actions or observed.runner_pods > 0:
        return _Outcome(
            Phase.TERMINATING,
            Reason.TERMINATE_REQUESTED,
            f"stopping the runner ({observed.runner_pods} runner pod(s) left)",
            actions=actions,
            requested=True,
        )
    if task.spec.on_terminate is OnTerminate.KEEP:
        done = f" ({record.done} rows)" if record is not None else ""
        return _Outcome(
            Phase.TERMINATED,
            Reason.TERMINATED_KEPT,
            f"terminated; the rows it wrote{done} are kept (onTerminate: Keep)",
            requested=True,
        )
    name = job_name(task.name, "rollback")
    return _Outcome(
        Phase.ROLLING_BACK,
        Reason.ROLLBACK_STARTED,
        f"no runner pod is left; rollback Job {name} created",
        actions=(CreateRollbackJob(name),),
        requested=True,
    )


def _rolling_back(task: Task, observed: Observed) -> _Outcome:
    """The rollback's end comes from the runner's record, like the run's."""
    record = observed.record
    job = observed.rollback_job
    if record is not None and record.rollback_status is RollbackOutcome.SUCCEEDED:
        conflicts = record.rollback_conflicts
        left = f"; {conflicts} rows changed by others since were left alone" if conflicts else ""
        return _Outcome(
            Phase.ROLLED_BACK,
            Reason.ROLLED_BACK,
            f"rolled back: {record.rollback_done} rows undone{left}",
            requested=True,
            warning=conflicts > 0,
        )
    if record is not None and record.rollback_status is RollbackOutcome.FAILED:
        return _Outcome(
            Phase.FAILED,
            Reason.ROLLBACK_FAILED,
            f"rollback failed: {record.rollback_message or 'no message'}",
            warning=True,
        )
    if job is not None and job.failed:
        detail = (record.rollback_message if record else None) or job.failure_message
        return _Outcome(
            Phase.FAILED,
            Reason.ROLLBACK_FAILED,
            f"rollback Job {job.name} failed ({job.failure_reason or 'no reason'}): "
            f"{detail or 'no message'}",
            warning=True,
        )
    if job is not None and job.complete:
        said = record.rollback_status if record else "nothing"
        return _Outcome(
            Phase.FAILED,
            Reason.ROLLBACK_FAILED,
            f"rollback Job {job.name} completed but the runner's record says {said}, not succeeded",
            warning=True,
        )
    name = job_name(task.name, "rollback")
    if job is None and observed.runner_pods == 0:
        return _Outcome(
            Phase.ROLLING_BACK,
            Reason.ROLLBACK_JOB_RECREATED,
            f"rollback Job {name} was missing and is created again; the rollback resumes "
            "from its checkpoint",
            actions=(CreateRollbackJob(name),),
            warning=True,
        )
    return _Outcome(Phase.ROLLING_BACK, Reason.ROLLBACK_RUNNING, _rollback_text(record))


def _progress_text(record: RunnerRecord | None) -> str:
    if record is None:
        return "running: waiting for the runner's first checkpoint"
    of = f" of {record.total}" if record.total is not None else ""
    return f"running: {record.done}{of} rows done, {record.row_errors} row errors"


def _rollback_text(record: RunnerRecord | None) -> str:
    if record is None:
        return "rolling back: waiting for the rollback's first checkpoint"
    of = f" of {record.rollback_total}" if record.rollback_total is not None else ""
    return f"rolling back: {record.rollback_done}{of} rows undone"


# --------------------------------------------------------------------------- status


_RUNNING_CLOCK = frozenset({Phase.RUNNING, Phase.PAUSING})


def _apply(
    task: Task,
    status: TaskStatus,
    observed: Observed,
    now: dt.datetime,
    outcome: _Outcome,
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
    key = _key(task)

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
            "last_action": last_action,
        }
    )
    if moved:
        what = f"{before or Phase.PENDING} -> {phase}: {outcome.message}"
        who = _requester(last_action) if outcome.requested else ""
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
    current: Sequence[Condition], task: Task, outcome: _Outcome, now: dt.datetime
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


# --------------------------------------------------------------------------- deletion


@dataclass(frozen=True)
class Cleanup:
    """What a deleted LongTask's finalizer does now, and whether it may be removed.

    ``done``: no runner pod is left and no Job of the task stands, so the finalizer can go
    and a new LongTask of the same name cannot meet this one's Jobs.
    """

    actions: tuple[Action, ...]
    done: bool


def decide_deletion(task: Task, status: TaskStatus, observed: Observed) -> Cleanup:
    """Stop a deleted task's runners cleanly: delete both Jobs (foreground), wait for the pods.

    Deleting is not undoing: the rows written stay (terminate, then delete after
    ``RolledBack``, to remove them). A rollback cut short is said in a Warning event; its
    undo journal stays in the database, so ``python -m longtask.runner rollback --task
    <uid>`` can finish it.
    """
    actions: list[Action] = [
        DeleteJob(job.name, "Foreground")
        for job in (observed.run_job, observed.rollback_job)
        if job is not None and not job.deleting
    ]
    if actions and task.spec.state is DesiredState.TERMINATED:
        actions.insert(0, HoldRun("Terminated"))
    if actions and status.phase is Phase.ROLLING_BACK:
        record = observed.record
        where = f" at {record.rollback_done} rows undone" if record is not None else ""
        actions.append(
            PostEvent(
                "Warning",
                Reason.ROLLBACK_INTERRUPTED,
                f"deleted while rolling back{where}: the rows not yet undone stay; run "
                f"'python -m longtask.runner rollback --task {task.uid}' to finish",
            )
        )
    done = observed.runner_pods == 0 and observed.run_job is None and observed.rollback_job is None
    key = _key(task)
    if done and key is not None:
        actions.append(ReleaseKey(key))
    return Cleanup(tuple(actions), done)
