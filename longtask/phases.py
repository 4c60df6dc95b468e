"""The LongTask state vocabulary: desired states, observed phases, termination policy.

One source of truth: the CRD's ``enum:`` lists mirror these (``tests/operator/test_crd.py`` checks).
"""

from __future__ import annotations

from enum import StrEnum


class DesiredState(StrEnum):
    """``spec.state``: what a client asks for. The one field every client edits."""

    RUNNING = "Running"
    PAUSED = "Paused"
    TERMINATED = "Terminated"


class OnTerminate(StrEnum):
    """``spec.onTerminate``: what happens to a task's writes when it is terminated."""

    ROLLBACK = "Rollback"
    KEEP = "Keep"


class OnMaxPause(StrEnum):
    """``spec.onMaxPause``: what the operator does with a task paused for longer than its
    ``maxPauseSeconds``."""

    RESUME = "Resume"
    TERMINATE = "Terminate"


class Phase(StrEnum):
    """``status.phase``: what the operator observes.

    ``Pending -> Queued -> Running <-> Pausing -> Paused``, then ``Succeeded | Failed``,
    or ``Terminating -> RollingBack -> RolledBack`` (``Terminated`` with ``onTerminate: Keep``).
    """

    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    PAUSING = "Pausing"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    TERMINATED = "Terminated"

    @property
    def is_final(self) -> bool:
        """True for phases no control action can leave."""
        return self in FINAL_PHASES


FINAL_PHASES = frozenset(
    {Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK, Phase.TERMINATED}
)


class RunOutcome(StrEnum):
    """The runner's own record of a run in ``longtask.tasks.run_status`` (not a k8s phase)."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RollbackOutcome(StrEnum):
    """The runner's record of a rollback in ``longtask.tasks.rollback_status``."""

    NONE = "none"
    RUNNING = "running"
    STOPPED = "stopped"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ConditionType(StrEnum):
    """``status.conditions[].type``: the questions a person or a client asks of a task.

    Each follows the ``metav1.Condition`` shape. ``Succeeded`` is a run-to-completion
    condition in the style of Knative/Tekton: ``Unknown`` until the task ends, then ``True``
    or ``False`` with the reason (``Failed``, ``RolledBack``, ...).
    """

    PROGRESSING = "Progressing"  # True while work (run, stop or rollback) is under way
    PAUSED = "Paused"  # True while the task is paused and no runner pod is left
    SUCCEEDED = "Succeeded"  # Unknown until final; True only for phase Succeeded
    ROLLED_BACK = "RolledBack"  # present once a rollback was asked for; True when it is done
