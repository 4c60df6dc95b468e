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
  The API refuses such a request before it reaches the spec (``api/control.py``: 409
  naming the phase, a repeated terminate of a RolledBack or Terminated task in effect),
  and answers a task whose record says succeeded as Succeeded, as ``_terminate`` does.
* The throttle: ``spec.rateLimit`` may change at any time. Whenever the runner's record
  (once there is one) holds another limit than the spec, ``SetRateLimit`` writes the
  spec's; the runner reads it before every chunk. A change the operator had not seen
  (``status.rateLimit``) is a request: ``lastAction`` (``changed: [rateLimit]``) and a
  ``RateLimitChanged`` Event; on a final task an ``ActionIgnored`` Event, nothing written.
* Bounds: a pause ends by itself at ``resumeAt`` or ``maxPauseSeconds`` after it was seen
  (then ``onMaxPause``: resumed, or terminated), whichever comes first; a task terminates
  once ``runningSeconds`` reaches ``maxRunningSeconds``. Each is a ``PatchSpec`` of
  ``spec.state`` credited to the operator, so the next reconcile handles it as any
  request (the hold, the Job, the key), and an Event; ``wake_at`` asks for a reconcile at
  the next bound. Final and terminating tasks have none.
* ``runningSeconds`` counts ``Running`` and ``Pausing`` (a runner is working or finishing
  its chunk), ``pausedSeconds`` counts ``Paused`` after a start; both whole seconds.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

from longtask.operator.actions import (
    Action,
    Cleanup,
    CreateRollbackJob,
    CreateRunJob,
    Decision,
    DeleteJob,
    EventType,
    Hold,
    HoldRun,
    PatchSpec,
    PostEvent,
    Propagation,
    ReleaseKey,
    ReleaseRun,
    ResumeJob,
    SetRateLimit,
    SuspendJob,
)
from longtask.operator.admission import KeyMember, KeyQueue, admit, key_queue
from longtask.operator.names import job_name
from longtask.operator.observed import JobState, Observed
from longtask.operator.reasons import Reason
from longtask.operator.status import RUNNING_CLOCK, Outcome, build, key_of, requester

from longtask import tasktypes
from longtask.model import (
    ChangedField,
    LastAction,
    Task,
    TaskStatus,
)
from longtask.phases import (
    DesiredState,
    OnMaxPause,
    OnTerminate,
    Phase,
    RollbackOutcome,
    RunOutcome,
)
from longtask.taskrecord import RunnerRecord

# The machine's vocabulary, importable from here as from the modules that define it.
__all__ = [
    "Action", "Cleanup", "CreateRollbackJob", "CreateRunJob", "Decision", "DeleteJob",
    "EventType", "Hold", "HoldRun", "JobState", "KeyMember", "KeyQueue", "Observed",
    "PatchSpec", "PostEvent", "Propagation", "Reason", "ReleaseKey", "ReleaseRun", "ResumeJob",
    "RunnerRecord", "SetRateLimit", "SuspendJob", "admit", "decide", "decide_deletion", "key_queue",
]


def decide(task: Task, status: TaskStatus, observed: Observed, now: dt.datetime) -> Decision:
    """The next status and actions for one LongTask. Pure; ``now`` is a timezone-aware time.

    Never raises for any combination of inputs: an invalid ``spec.params`` becomes phase
    ``Failed`` (reason ``InvalidParams``).
    """
    now = now.astimezone(dt.UTC).replace(microsecond=0)  # metav1.Time has whole seconds
    phase = status.phase or Phase.PENDING
    started = _started(status, observed)
    last_action, new_request, throttle = _control_request(task, status, now)

    if phase.is_final:
        return _final(task, status, now, last_action, new_request, throttle)
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
    decision = build(task, status, observed, now, outcome, last_action, started)
    decision = _throttle(task, status, observed, decision, last_action if throttle else None)
    return _bounds(task, status, decision, now)


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
) -> tuple[LastAction | None, bool, bool]:
    """``status.lastAction`` after this reconcile, whether ``spec.state`` is a new request,
    and whether ``spec.rateLimit`` is.

    A task is created ``Running`` without a request; any other ``spec.state`` than the last
    one seen is a request. A ``spec.rateLimit`` other than the one the last reconcile saw
    (``status.rateLimit``), in a spec edited since (``metadata.generation``), is a throttle
    request; the first reconcile sees the limit the task was created with. Both are
    attributed to the annotations the resource carries now.
    """
    seen = status.last_action.state if status.last_action else DesiredState.RUNNING
    state_changed = task.spec.state is not seen
    # Only a spec edited since the last reconcile (a new generation) makes a request: a
    # status written before status.rateLimit existed holds none, and is not one.
    rate_changed = (status.phase is not None and task.generation != status.observed_generation
                    and task.spec.rate_limit != status.rate_limit)
    if not state_changed and not rate_changed:
        return status.last_action, False, False
    changed: tuple[ChangedField, ...] = (
        *(("state",) if state_changed else ()), *(("rateLimit",) if rate_changed else ()))
    action = LastAction(
        state=task.spec.state,
        rate_limit=task.spec.rate_limit,
        changed=changed,
        requested_by=task.requested_by,
        reason=task.request_reason,
        at=now,
    )
    return action, state_changed, rate_changed


def _limit_text(limit: float | None) -> str:
    return "unlimited" if limit is None else f"{limit:g} rows/s"


def _same_limit(record: RunnerRecord, limit: int | None) -> bool:
    if record.rate_limit is None or limit is None:
        return record.rate_limit is None and limit is None
    return float(record.rate_limit) == float(limit)


def _throttle(task: Task, status: TaskStatus, observed: Observed, decision: Decision,
              request: LastAction | None) -> Decision:
    """Keep the runner's record at ``spec.rateLimit`` and announce a throttle request.

    ``SetRateLimit`` whenever the record (once there is one) differs from the spec, request
    or not: a runner registering from a Job made with an older limit is put right at the
    next reconcile. It comes first, apart from the hold and Job actions. A task without a
    record yet needs none: its runner starts from the Job, made with the spec of its start.
    ``request`` (the new ``lastAction`` when ``spec.rateLimit`` changed) adds the
    ``RateLimitChanged`` Event.
    """
    record = observed.record
    actions: list[Action] = []
    if record is not None and not _same_limit(record, task.spec.rate_limit):
        actions.append(SetRateLimit(task.spec.rate_limit))
    actions.extend(decision.actions)
    if request is not None:
        actions.append(PostEvent(
            "Normal", Reason.RATE_LIMIT_CHANGED,
            f"rateLimit {_limit_text(status.rate_limit)} -> {_limit_text(task.spec.rate_limit)};"
            f" the runner keeps to it from its next chunk{requester(request)}"))
    return dataclasses.replace(decision, actions=tuple(actions))


def _ignored(task: Task, phase: Phase, why: str) -> PostEvent:
    return PostEvent(
        "Normal",
        Reason.ACTION_IGNORED,
        f"spec.state {task.spec.state} ignored: the task is {phase}; {why}",
    )


def _with_note(outcome: Outcome, note: PostEvent) -> Outcome:
    return dataclasses.replace(outcome, notes=(*outcome.notes, note))


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s"


def _bounds(task: Task, status: TaskStatus, decision: Decision, now: dt.datetime) -> Decision:
    """The bounds the operator enforces: ``resumeAt``, ``maxPauseSeconds`` (then
    ``onMaxPause``) and ``maxRunningSeconds``, each ended by a ``PatchSpec`` of
    ``spec.state`` credited to the operator, which the next reconcile carries out like any
    client's request, with its Event (``ScheduledResume``, ``MaxPauseReached``,
    ``MaxRunningReached``). ``wake_at`` is the next bound still ahead.

    A pause counts from when the operator first saw it (``status.pauseRequestedAt``); a
    running time is ``runningSeconds`` (Running and Pausing only). A ``resumeAt`` left on a
    task asked to run again (a plain ``kubectl`` resume) is removed, so it cannot end a
    later pause.
    """
    spec = task.spec
    new = decision.status
    actions = list(decision.actions)
    wake: list[dt.datetime] = []
    requested_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    if spec.state is DesiredState.RUNNING and spec.resume_at is not None:
        actions.append(PatchSpec((("resumeAt", None),)))
    if spec.state is DesiredState.PAUSED:
        requested_at = status.pause_requested_at or now
        ends: list[tuple[dt.datetime, Reason]] = []
        if spec.resume_at is not None:
            ends.append((spec.resume_at.astimezone(dt.UTC).replace(microsecond=0),
                         Reason.SCHEDULED_RESUME))
        if spec.max_pause_seconds is not None:
            ends.append((requested_at + dt.timedelta(seconds=spec.max_pause_seconds),
                         Reason.MAX_PAUSE_REACHED))
        if ends:
            ends_at, why = min(ends)
            if ends_at <= now:
                actions.extend(_end_pause(task, why, now - requested_at))
            else:
                wake.append(ends_at)
    limit = spec.max_running_seconds
    if (limit is not None and spec.state is not DesiredState.TERMINATED
            and new.phase is not None and new.phase in RUNNING_CLOCK | {Phase.PAUSED}
            and new.started_at is not None):
        if new.running_seconds >= limit:
            actions.append(PostEvent(
                "Warning", Reason.MAX_RUNNING_REACHED,
                f"ran {_seconds(new.running_seconds)} (paused time not counted), "
                f"maxRunningSeconds {limit}: terminated (onTerminate {spec.on_terminate})"))
            actions.append(PatchSpec((("state", str(DesiredState.TERMINATED)),
                                      ("resumeAt", None)),
                                     reason=f"maxRunningSeconds {limit} reached"))
        elif new.phase in RUNNING_CLOCK:
            wake.append(now + dt.timedelta(seconds=limit - new.running_seconds))
    new = new.model_copy(update={"pause_requested_at": requested_at, "pause_ends_at": ends_at})
    return Decision(new, tuple(actions), wake_at=min(wake) if wake else None)


def _end_pause(task: Task, why: Reason, paused: dt.timedelta) -> list[Action]:
    """The Event and the spec change that end a pause at its bound."""
    spec = task.spec
    resume = why is Reason.SCHEDULED_RESUME or spec.on_max_pause is OnMaxPause.RESUME
    state = DesiredState.RUNNING if resume else DesiredState.TERMINATED
    if why is Reason.SCHEDULED_RESUME:
        assert spec.resume_at is not None
        at = spec.resume_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message, reason = f"resumeAt {at} reached: resumed", f"resumeAt {at}"
    else:
        done = "resumed" if resume else f"terminated (onTerminate {spec.on_terminate})"
        message = (f"paused {_seconds(paused.total_seconds())}, maxPauseSeconds "
                   f"{spec.max_pause_seconds} (onMaxPause {spec.on_max_pause}): {done}")
        reason = f"maxPauseSeconds {spec.max_pause_seconds} reached"
    return [PostEvent("Normal" if resume else "Warning", why, message),
            PatchSpec((("state", str(state)), ("resumeAt", None)), reason=reason)]


def _final(
    task: Task,
    status: TaskStatus,
    now: dt.datetime,
    last_action: LastAction | None,
    new_request: bool,
    throttle: bool,
) -> Decision:
    """A final phase never changes; a request is recorded and answered with an event (a
    rate limit is not written: no runner of the task runs any more)."""
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
    if throttle:
        # One ActionIgnored Event per reconcile (Events are named after their reason).
        note = (f"spec.rateLimit {_limit_text(task.spec.rate_limit)} ignored: the task is "
                f"{phase}; no runner of it runs any more")
        if actions:
            ignored = actions.pop()
            assert isinstance(ignored, PostEvent)
            note = f"{ignored.message}; {note}"
        actions.append(PostEvent("Normal", Reason.ACTION_IGNORED, note))
    new = status.model_copy(
        update={
            "last_action": last_action,
            "message": message,
            "observed_generation": task.generation,
            "rate_limit": task.spec.rate_limit,
        }
    )
    return Decision(new, tuple(actions))


def _before_start(task: Task, status: TaskStatus, observed: Observed) -> Outcome:
    """No Job, no runner record: nothing was written, so every exit is immediate."""
    spec = task.spec
    key = key_of(task)
    if spec.state is DesiredState.TERMINATED:
        if spec.on_terminate is OnTerminate.ROLLBACK:
            return Outcome(
                Phase.ROLLED_BACK,
                Reason.NOTHING_WRITTEN,
                "terminated before it started: nothing was written, so nothing to roll back",
                requested=True,
            )
        return Outcome(
            Phase.TERMINATED,
            Reason.TERMINATED_BEFORE_START,
            "terminated before it started: nothing was written",
            requested=True,
        )
    if spec.state is DesiredState.PAUSED:
        return Outcome(
            Phase.PAUSED,
            Reason.PAUSED_BEFORE_START,
            f"paused before it started; it does not hold concurrency key {key!r} and takes "
            "its place in the queue again when resumed",
            requested=True,
        )
    try:
        tasktypes.parse_params(spec.type, spec.params)
    except (tasktypes.ParamsError, tasktypes.UnknownTaskType) as exc:
        return Outcome(
            Phase.FAILED,
            Reason.INVALID_PARAMS,
            f"{exc}; fix spec.params in a new LongTask",
            warning=True,
        )
    resumed = status.phase is Phase.PAUSED
    if not observed.admitted:
        holder = f", held by {observed.key_holder}" if observed.key_holder else ""
        place = f" (position {observed.queue_position})" if observed.queue_position else ""
        return Outcome(
            Phase.QUEUED,
            Reason.WAITING_FOR_KEY,
            f"waiting for concurrency key {key!r}{holder}{place}",
            requested=resumed,
        )
    limit = observed.organization_limit
    if limit and observed.organization_running >= limit:
        return Outcome(
            Phase.QUEUED,
            Reason.WAITING_FOR_ORGANIZATION,
            f"waiting: organization {spec.organization!r} already runs "
            f"{observed.organization_running} tasks, its limit in this namespace",
            requested=resumed,
        )
    name = job_name(task.name, "run")
    return Outcome(
        Phase.RUNNING,
        Reason.RESUMED if resumed else Reason.STARTED,
        f"run Job {name} created",
        actions=(ReleaseRun(), CreateRunJob(name, suspend=False)),
        requested=resumed,
    )


def _run_outcome(observed: Observed) -> Outcome | None:
    """The run's end if the runner's record (or a failed Job) says it ended, else ``None``."""
    record = observed.record
    job = observed.run_job
    if record is not None and record.run_status is RunOutcome.SUCCEEDED:
        errors = f", {record.row_errors} row errors" if record.row_errors else ""
        return Outcome(Phase.SUCCEEDED, Reason.COMPLETED, f"completed: {record.done} rows{errors}")
    if record is not None and record.run_status is RunOutcome.FAILED:
        return Outcome(
            Phase.FAILED,
            Reason.RUNNER_FAILED,
            record.message or "the runner recorded a failure without a message",
            warning=True,
        )
    if job is not None and job.failed:
        detail = (record.message if record else None) or job.failure_message or "no message"
        return Outcome(
            Phase.FAILED,
            Reason.JOB_FAILED,
            f"run Job {job.name} failed ({job.failure_reason or 'no reason'}): {detail}",
            warning=True,
        )
    if job is not None and job.complete:
        said = record.run_status if record else "nothing"
        return Outcome(
            Phase.FAILED,
            Reason.RECORD_MISMATCH,
            f"run Job {job.name} completed but the runner's record says {said}, not succeeded",
            warning=True,
        )
    return None


def _run(task: Task, status: TaskStatus, observed: Observed) -> Outcome:
    """Started and asked to run: resume a suspended Job, replace a lost one, report progress."""
    ended = _run_outcome(observed)
    if ended is not None:
        return ended
    job = observed.run_job
    name = job_name(task.name, "run")
    if job is None or job.deleting:
        if observed.runner_pods > 0 or job is not None:
            return Outcome(
                Phase.RUNNING,
                Reason.WAITING_FOR_OLD_POD,
                f"run Job {name} is gone or going; waiting for the old runner pod to stop "
                "before creating it again",
            )
        return Outcome(
            Phase.RUNNING,
            Reason.JOB_RECREATED,
            f"run Job {name} was missing and is created again; the runner resumes from its "
            "last checkpoint",
            actions=(ReleaseRun(), CreateRunJob(name, suspend=False)),
            warning=True,
        )
    if job.suspended:
        return Outcome(
            Phase.RUNNING,
            Reason.RESUMED,
            "resumed: the runner continues from its last checkpoint",
            actions=(ReleaseRun(), ResumeJob(job.name)),
            requested=True,
        )
    return Outcome(Phase.RUNNING, Reason.RUNNING, _progress_text(observed.record))


def _pause(task: Task, observed: Observed) -> Outcome:
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
        return Outcome(
            Phase.PAUSING,
            Reason.PAUSE_REQUESTED,
            f"stopping the runner at its next checkpoint ({pods} runner pod(s) left)",
            actions=actions,
            requested=True,
        )
    record = observed.record
    if record is not None and record.run_status is RunOutcome.RUNNING:
        return Outcome(
            Phase.PAUSED,
            Reason.STOPPED_WITHOUT_RECORD,
            f"paused at {record.done} rows; the runner stopped without recording it (killed "
            "after its grace period?); it resumes from its last committed checkpoint",
            requested=True,
            warning=True,
        )
    done = f" at {record.done} rows" if record is not None else ""
    return Outcome(
        Phase.PAUSED,
        Reason.STOPPED_AT_CHECKPOINT,
        f"paused{done}; no runner pod is left and the checkpoint is committed",
        requested=True,
    )


def _terminate(task: Task, status: TaskStatus, observed: Observed) -> Outcome:
    """Started and terminated: stop the runner, then keep the writes or roll them back."""
    if status.phase is Phase.ROLLING_BACK:
        return _rolling_back(task, observed)
    record = observed.record
    if record is not None and record.run_status is RunOutcome.SUCCEEDED:
        return Outcome(
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
        return Outcome(
            Phase.TERMINATING,
            Reason.TERMINATE_REQUESTED,
            f"stopping the runner ({observed.runner_pods} runner pod(s) left)",
            actions=actions,
            requested=True,
        )
    if task.spec.on_terminate is OnTerminate.KEEP:
        done = f" ({record.done} rows)" if record is not None else ""
        return Outcome(
            Phase.TERMINATED,
            Reason.TERMINATED_KEPT,
            f"terminated; the rows it wrote{done} are kept (onTerminate: Keep)",
            requested=True,
        )
    name = job_name(task.name, "rollback")
    return Outcome(
        Phase.ROLLING_BACK,
        Reason.ROLLBACK_STARTED,
        f"no runner pod is left; rollback Job {name} created",
        actions=(CreateRollbackJob(name),),
        requested=True,
    )


def _rolling_back(task: Task, observed: Observed) -> Outcome:
    """The rollback's end comes from the runner's record, like the run's."""
    record = observed.record
    job = observed.rollback_job
    if record is not None and record.rollback_status is RollbackOutcome.SUCCEEDED:
        conflicts = record.rollback_conflicts
        left = f"; {conflicts} rows changed by others since were left alone" if conflicts else ""
        return Outcome(
            Phase.ROLLED_BACK,
            Reason.ROLLED_BACK,
            f"rolled back: {record.rollback_done} rows undone{left}",
            requested=True,
            warning=conflicts > 0,
        )
    if record is not None and record.rollback_status is RollbackOutcome.FAILED:
        return Outcome(
            Phase.FAILED,
            Reason.ROLLBACK_FAILED,
            f"rollback failed: {record.rollback_message or 'no message'}",
            warning=True,
        )
    if job is not None and job.failed:
        detail = (record.rollback_message if record else None) or job.failure_message
        return Outcome(
            Phase.FAILED,
            Reason.ROLLBACK_FAILED,
            f"rollback Job {job.name} failed ({job.failure_reason or 'no reason'}): "
            f"{detail or 'no message'}",
            warning=True,
        )
    if job is not None and job.complete:
        said = record.rollback_status if record else "nothing"
        return Outcome(
            Phase.FAILED,
            Reason.ROLLBACK_FAILED,
            f"rollback Job {job.name} completed but the runner's record says {said}, not succeeded",
            warning=True,
        )
    name = job_name(task.name, "rollback")
    if job is None and observed.runner_pods == 0:
        return Outcome(
            Phase.ROLLING_BACK,
            Reason.ROLLBACK_JOB_RECREATED,
            f"rollback Job {name} was missing and is created again; the rollback resumes "
            "from its checkpoint",
            actions=(CreateRollbackJob(name),),
            warning=True,
        )
    return Outcome(Phase.ROLLING_BACK, Reason.ROLLBACK_RUNNING, _rollback_text(record))


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
    key = key_of(task)
    if done and key is not None:
        actions.append(ReleaseKey(key))
    return Cleanup(tuple(actions), done)
