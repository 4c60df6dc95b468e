"""The LongTask as the operator reads and writes it: spec, status and the bits of metadata used.

Field names are camelCase on the wire (the CRD in ``crds/longtask.yaml``) and snake_case in
Python; ``tests/operator/test_crd.py`` checks that these models and the CRD's schema name the
same fields, so a status field the operator writes is never pruned by the server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from longtask import tasktypes
from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY
from longtask.phases import ConditionType, DesiredState, OnMaxPause, OnTerminate, Phase


class _Wire(BaseModel):
    """camelCase on the wire; unknown keys ignored (a newer CRD may carry more)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


ResourceName = Literal["cpu", "memory"]


class Resources(_Wire):
    """``spec.resources``: container requests and limits, Kubernetes quantities."""

    requests: dict[ResourceName, str | int] | None = None
    limits: dict[ResourceName, str | int] | None = None


class TaskSpec(_Wire):
    """``spec``: the desired state of a task. See the CRD for each field's meaning."""

    type: str
    organization: str
    params: dict[str, Any] = Field(default_factory=dict)
    state: DesiredState = DesiredState.RUNNING
    on_terminate: OnTerminate = OnTerminate.ROLLBACK
    concurrency_key: str | None = None
    parallelism: int = Field(default=1, ge=1)
    rate_limit: int | None = Field(default=None, ge=1)
    resources: Resources | None = None
    resume_at: dt.datetime | None = None
    max_pause_seconds: int | None = Field(default=None, ge=1)
    on_max_pause: OnMaxPause = OnMaxPause.RESUME
    max_running_seconds: int | None = Field(default=None, ge=1)

    def effective_concurrency_key(self) -> str:
        """``concurrencyKey`` if given, else the type's default (``BaselineUpload/<org>``).

        Raises :class:`longtask.tasktypes.UnknownTaskType` for an unregistered type.
        """
        if self.concurrency_key:
            return self.concurrency_key
        return tasktypes.default_concurrency_key(self.type, self.organization, self.params)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_Wire):
    """One ``metav1.Condition``: ``lastTransitionTime`` changes only when ``status`` does."""

    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: dt.datetime
    observed_generation: int | None = None


class Progress(_Wire):
    """``status.progress``: the run's counts from the runner's record.

    ``etaSeconds`` is whole seconds (a number, not a duration string, so clients can sort
    and sum it); ``percent`` is ``floor(100 * done / total)``, 100 only once succeeded.
    """

    total: int | None = None
    done: int = 0
    row_errors: int = 0
    rate_per_second: float | None = None
    eta_seconds: int | None = None
    percent: int | None = None


class RollbackProgress(_Wire):
    """``status.rollback``: the rollback's counts; ``conflicts`` are rows left alone."""

    total: int | None = None
    done: int = 0
    conflicts: int = 0


ChangedField = Literal["state", "rateLimit"]


class LastAction(_Wire):
    """``status.lastAction``: the last control request the operator saw (a change of
    ``spec.state`` or ``spec.rateLimit``), and from whom.

    ``state`` and ``rate_limit`` are the spec's after the request (``rate_limit`` rows per
    second, ``None``: unlimited); ``changed`` names the fields the request changed.
    """

    state: DesiredState
    rate_limit: int | None = None
    changed: tuple[ChangedField, ...] = ("state",)
    requested_by: str | None = None
    reason: str | None = None
    at: dt.datetime


class TaskStatus(_Wire):
    """``status``: written by the operator only. Times are UTC, seconds precision."""

    phase: Phase | None = None
    message: str | None = None
    conditions: tuple[Condition, ...] = ()
    observed_generation: int | None = None
    concurrency_key: str | None = None
    progress: Progress | None = None
    rollback: RollbackProgress | None = None
    job_name: str | None = None
    rollback_job_name: str | None = None
    queued_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    phase_since: dt.datetime | None = None
    accounted_at: dt.datetime | None = None
    running_seconds: int = 0
    paused_seconds: int = 0
    # spec.rateLimit as the operator last saw it: a spec that differs is a throttle request.
    rate_limit: int | None = None
    # When the operator first saw the pause now in force (maxPauseSeconds counts from it),
    # and when that pause ends by itself (resumeAt or maxPauseSeconds, the earlier).
    pause_requested_at: dt.datetime | None = None
    pause_ends_at: dt.datetime | None = None
    last_action: LastAction | None = None

    @classmethod
    def from_body(cls, status: Mapping[str, Any] | None) -> TaskStatus:
        """Parse ``status`` as stored; keys other than ours (kopf's own) are ignored."""
        return cls.model_validate(dict(status or {}))

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready camelCase form, without unset (``None``) fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def condition(self, type_: ConditionType) -> Condition | None:
        """The condition of that type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)


def status_patch(old: TaskStatus, new: TaskStatus) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning ``old`` into ``new``; ``{}`` when equal.

    Fields ``new`` no longer has are set to ``null``; lists (conditions) are replaced whole.
    """
    return _merge_patch(old.to_wire(), new.to_wire())


def _merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = _merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif value != before:
            patch[key] = value
    return patch


@dataclass(frozen=True)
class Task:
    """A LongTask's identity, spec and the control-request annotations, parsed from its body.

    ``requested_by`` and ``request_reason`` come from the annotations named in
    :mod:`longtask.constants`; a client sets them with the ``spec.state`` change they explain.
    """

    name: str
    namespace: str
    uid: str
    generation: int
    created_at: dt.datetime
    spec: TaskSpec
    requested_by: str | None = None
    request_reason: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Task:
        """Parse a LongTask object (``metadata`` and ``spec``) as the API server returns it.

        Raises ``pydantic.ValidationError`` when ``spec`` does not fit :class:`TaskSpec`.
        """
        meta = body["metadata"]
        annotations: Mapping[str, str] = meta.get("annotations") or {}
        created = meta["creationTimestamp"]
        created_at = (
            created
            if isinstance(created, dt.datetime)
            else dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        )
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 1)),
            created_at=created_at,
            spec=TaskSpec.model_validate(body.get("spec") or {}),
            requested_by=annotations.get(ANNOTATION_REQUESTED_BY) or None,
            request_reason=annotations.get(ANNOTATION_REASON) or None,
        )
