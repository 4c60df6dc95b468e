"""What a decision asks the handler to do, in order (:class:`Decision`): the Job actions,
the hold in the runner's record that comes before a Job is stopped or started, the rate
limit in that record, the Events and the release of a concurrency key. Each is idempotent."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY
from longtask.model import (
    TaskStatus,
)


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
class SetRateLimit:
    """Write ``spec.rateLimit`` into the runner's record (``longtask.tasks.rate_limit``, see
    :func:`longtask.taskrecord.set_rate_limit`): the runner's next chunk keeps to it.
    ``rate_limit`` is rows per second, ``None`` unlimited."""

    rate_limit: int | None


OPERATOR_SUBJECT = "longtask-operator"
"""Who the operator's own spec changes are credited to (the requested-by annotation)."""


@dataclass(frozen=True)
class PatchSpec:
    """Merge-patch the LongTask's ``spec`` (``None`` removes a field) with who and why in
    the requested-by and reason annotations of the same patch: the operator's own control
    requests (a scheduled resume, a bound reached), which the next reconcile carries out
    like any client's. ``reason`` ``None`` leaves the annotations alone."""

    spec: tuple[tuple[str, object], ...]
    reason: str | None = None

    def body(self) -> dict[str, object]:
        """The merge patch (RFC 7386)."""
        patch: dict[str, object] = {"spec": dict(self.spec)}
        if self.reason is not None:
            patch["metadata"] = {"annotations": {ANNOTATION_REQUESTED_BY: OPERATOR_SUBJECT,
                                                 ANNOTATION_REASON: self.reason}}
        return patch


@dataclass(frozen=True)
class ReleaseKey:
    """The task no longer holds ``key``: reconcile the tasks waiting for it now."""

    key: str


Action = (
    CreateRunJob | SuspendJob | ResumeJob | DeleteJob | CreateRollbackJob | HoldRun | ReleaseRun
    | SetRateLimit | PatchSpec | PostEvent | ReleaseKey
)


@dataclass(frozen=True)
class Decision:
    """The new ``status`` (whole; see ``model.status_patch``) and the actions, in order.

    ``wake_at``: the next time the decision would differ with nothing else changed (a pause
    or a running time reaching its bound), so the handler reconciles the task then.
    """

    status: TaskStatus
    actions: tuple[Action, ...] = ()
    wake_at: dt.datetime | None = None


@dataclass(frozen=True)
class Cleanup:
    """What a deleted LongTask's finalizer does now, and whether it may be removed.

    ``done``: no runner pod is left and no Job of the task stands, so the finalizer can go
    and a new LongTask of the same name cannot meet this one's Jobs.
    """

    actions: tuple[Action, ...]
    done: bool
