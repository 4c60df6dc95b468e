"""Which control requests a task accepts: pure functions, tested without a cluster.

``decide(spec, phase, target, on_terminate, rate_limit) -> Decision``: the ``spec`` fields
to patch, nothing (the request is already in effect: repeating it is not an error), or a
refusal with the reason (answered 409). One rule for ended tasks (api/README.md, "Control
requests on ended tasks"): in a final phase (Succeeded, Failed, RolledBack, Terminated)
every change of ``spec.state``, ``spec.onTerminate`` or ``spec.rateLimit`` is refused,
naming the phase; only a repeat of the terminate that ended the task (RolledBack,
Terminated) is in effect. Before that: ``Terminated`` is final in ``spec.state`` (as the
CRD says), and ``onTerminate`` cannot change once a terminate was asked for;
``rateLimit`` may change in every phase that is not final (the rollback keeps to it too).

``phase`` is the task's phase as :func:`effective_phase` gives it: the runner's own record
of success counts before the operator has written it into status, so a terminate cannot
slip in between (operator/README.md, "A completed task is not rolled back").

``decide_delete(phase, started, keep_writes)``: whether ``DELETE /v1/tasks/{name}`` may
delete the LongTask now. Deleting is not undoing (operator/README.md, "Rules where the
issue is silent"): a task that may hold a runner or has rows a rollback could still undo
is deleted only when the caller says the rows stay (``keepWrites=true``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from longtask.phases import DesiredState, OnTerminate, Phase, RollbackOutcome, RunOutcome
from longtask.taskrecord import RunnerRecord

VERBS = {
    DesiredState.RUNNING: "resume",
    DesiredState.PAUSED: "pause",
    DesiredState.TERMINATED: "terminate",
}


@dataclass(frozen=True)
class Decision:
    """``patch``: spec fields to set (empty: already in effect); ``refusal``: why not."""

    patch: dict[str, Any] = field(default_factory=dict)
    refusal: str | None = None

    @property
    def in_effect(self) -> bool:
        """True when nothing needs to change."""
        return self.refusal is None and not self.patch


def effective_phase(phase: Phase, record: RunnerRecord | None) -> Phase:
    """The phase a control request is decided on: ``Succeeded`` once the runner's record
    says its run succeeded (no rollback begun), even while ``status.phase`` still says
    otherwise; else ``phase``. The operator reports the same (``CompletedBeforeTerminate``
    when a terminate arrived meanwhile)."""
    if (not phase.is_final and record is not None
            and record.run_status is RunOutcome.SUCCEEDED
            and record.rollback_status is RollbackOutcome.NONE):
        return Phase.SUCCEEDED
    return phase


UNCHANGED: Any = object()
"""``rate_limit`` of :func:`decide` when the request leaves ``spec.rateLimit`` alone."""


def decide(spec: Mapping[str, Any], phase: Phase, target: DesiredState | None,
           on_terminate: OnTerminate | None = None,
           rate_limit: int | None = UNCHANGED,
           bounds: Mapping[str, Any] | None = None) -> Decision:
    """Decide a request for ``spec.state = target``, ``spec.onTerminate``,
    ``spec.rateLimit = rate_limit`` (rows per second; ``None`` removes the limit) and/or
    ``bounds`` (``resumeAt``, ``maxPauseSeconds``, ``onMaxPause``, ``maxRunningSeconds`` as
    the spec holds them; ``None`` removes one).

    ``spec`` is the task's current spec, ``phase`` its phase (:func:`effective_phase`;
    ``Pending`` before the operator has seen it). A ``resumeAt`` goes with a pause (the
    state after the request is Paused); a resume removes one left on the task.
    """
    state = DesiredState(spec.get("state") or DesiredState.RUNNING)
    current_policy = OnTerminate(spec.get("onTerminate") or OnTerminate.ROLLBACK)
    policy_change = on_terminate is not None and on_terminate != current_policy
    rate_change = rate_limit is not UNCHANGED and rate_limit != spec.get("rateLimit")
    changed = {k: v for k, v in (bounds or {}).items() if spec.get(k) != v}
    verb = VERBS.get(target, "change") if target is not None else "change"

    if phase.is_final:
        if rate_change:
            return Decision(refusal=(
                f"cannot change the rate limit: the task has ended ({phase}); no runner of "
                "it runs any more"))
        if changed:
            return Decision(refusal=(
                f"cannot change {', '.join(changed)}: the task has ended ({phase})"))
        return _ended(phase, state, target, policy_change, verb)

    after = target or state
    if (bounds or {}).get("resumeAt") is not None and after is not DesiredState.PAUSED:
        return Decision(refusal=(
            f"resumeAt ends a pause, and the task is asked to be {after}: pause it with "
            "resumeAt (POST .../pause), or leave resumeAt out"))
    if after is DesiredState.RUNNING and spec.get("resumeAt") and "resumeAt" not in changed:
        changed["resumeAt"] = None  # a resume ends the pause resumeAt belonged to
    throttle = {**({"rateLimit": rate_limit} if rate_change else {}), **changed}

    if state is DesiredState.TERMINATED:
        if target not in (None, DesiredState.TERMINATED):
            return Decision(refusal=(
                f"cannot {verb} a terminated task (phase {phase}); a terminate is final: "
                "create a new task instead"))
        if policy_change:
            return Decision(refusal=(
                f"the task was already terminated with onTerminate {current_policy}; that "
                "cannot change any more"))
        return Decision(patch=throttle)

    patch: dict[str, Any] = dict(throttle)
    if target is not None and target is not state:
        patch["state"] = str(target)
    if policy_change:
        patch["onTerminate"] = str(on_terminate)
    return Decision(patch=patch)


def _ended(phase: Phase, state: DesiredState, target: DesiredState | None,
           policy_change: bool, verb: str) -> Decision:
    """A task in a final phase: nothing changes; a repeated terminate is in effect."""
    if target is None and not policy_change:
        return Decision()
    ended_by_terminate = phase in (Phase.ROLLED_BACK, Phase.TERMINATED)
    if (ended_by_terminate and state is DesiredState.TERMINATED
            and target in (None, DesiredState.TERMINATED) and not policy_change):
        return Decision()
    if phase is Phase.SUCCEEDED and target is DesiredState.TERMINATED:
        return Decision(refusal=(
            "the task has ended (Succeeded): a completed task is not terminated or rolled "
            "back, its writes are kept"))
    if policy_change and target in (None, DesiredState.TERMINATED):
        return Decision(refusal=(
            f"the task has ended ({phase}): its onTerminate cannot change any more"))
    return Decision(refusal=f"cannot {verb} the task: it has ended ({phase}); "
                            "create a new task instead")


def has_run(status: Mapping[str, Any], record: RunnerRecord | None) -> bool:
    """Whether the task may hold a runner or have written rows: it was started (status,
    a run Job) or the runner's record shows a run."""
    return bool(status.get("startedAt") or status.get("jobName")
                or status.get("rollbackJobName")
                or (record is not None and (record.run_status is not RunOutcome.PENDING
                                            or record.done > 0)))


def decide_delete(phase: Phase, started: bool, keep_writes: bool,
                  done: int = 0) -> str | None:
    """Why the task may not be deleted now (answered 409), or ``None`` when it may.

    ``phase`` from :func:`effective_phase`, ``started`` from :func:`has_run`, ``done`` the
    rows the runner recorded. Allowed: a final phase, a task that never ran, or any task
    when ``keep_writes`` (the caller knows its rows stay).
    """
    if phase.is_final or not started or keep_writes:
        return None
    rows = f" ({done} rows so far)" if done else ""
    return (f"the task is {phase}: it may hold a runner, and deleting it does not undo what "
            f"it wrote{rows}. Terminate it and delete it once it is RolledBack, or delete "
            "with keepWrites=true to stop it and keep its rows")
