"""Which control requests a task accepts: one pure function, tested without a cluster.

``decide(spec, phase, target, on_terminate) -> Decision``: the ``spec`` fields to patch,
nothing (the request is already in effect: repeating it is not an error), or a refusal
with the reason (answered 409). The rules follow the CRD and the operator (see
operator/README.md): ``Terminated`` is final in ``spec.state``; the phases Succeeded,
Failed, RolledBack and Terminated take no control action; a completed task is not rolled
back; ``onTerminate`` cannot change once a terminate was asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from longtask.phases import DesiredState, OnTerminate, Phase

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


def decide(spec: Mapping[str, Any], phase: Phase, target: DesiredState | None,
           on_terminate: OnTerminate | None = None) -> Decision:
    """Decide a request for ``spec.state = target`` and/or ``spec.onTerminate``.

    ``spec`` is the task's current spec, ``phase`` its observed phase (``Pending`` before
    the operator has seen it).
    """
    state = DesiredState(spec.get("state") or DesiredState.RUNNING)
    current_policy = OnTerminate(spec.get("onTerminate") or OnTerminate.ROLLBACK)
    policy_change = on_terminate is not None and on_terminate != current_policy
    verb = VERBS.get(target, "change") if target is not None else "change"

    if state is DesiredState.TERMINATED:
        if target not in (None, DesiredState.TERMINATED):
            return Decision(refusal=(
                f"cannot {verb} a terminated task (phase {phase}); a terminate is final: "
                "create a new task instead"))
        if policy_change:
            return Decision(refusal=(
                f"the task was already terminated with onTerminate {current_policy}; that "
                "cannot change any more"))
        return Decision()

    if phase.is_final:
        if phase is Phase.SUCCEEDED and target is DesiredState.TERMINATED:
            return Decision(refusal=(
                "the task has completed (Succeeded); a completed task is not terminated or "
                "rolled back, its writes are kept"))
        if target is not None or policy_change:
            return Decision(refusal=f"cannot {verb} the task: it has ended ({phase})")
        return Decision()

    patch: dict[str, Any] = {}
    if target is not None and target is not state:
        patch["state"] = str(target)
    if policy_change:
        patch["onTerminate"] = str(on_terminate)
    return Decision(patch=patch)
