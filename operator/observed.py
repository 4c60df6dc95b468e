"""What the operator saw of a task outside the LongTask: its Jobs, its runner pods, the
runner's record and its place under its concurrency key (:class:`Observed`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from longtask.taskrecord import RunnerRecord


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
    ``organization_running``: the task's organization's other tasks in the namespace that
    hold a runner, against ``organization_limit`` (0: none; only read before a start).
    """

    run_job: JobState | None = None
    rollback_job: JobState | None = None
    runner_pods: int = 0
    record: RunnerRecord | None = None
    admitted: bool = False
    key_holder: str | None = None
    queue_position: int | None = None
    organization_running: int = 0
    organization_limit: int = 0
