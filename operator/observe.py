"""Pure readers that turn listed Kubernetes objects into what :mod:`.decide` takes.

The client layer lists; these functions only look at the returned dicts, so the rules they
hold (which pods are alive, which Job is the task's own, who holds a concurrency key) are
tested without a cluster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from longtask.operator.admission import KeyMember, KeyQueue, key_queue
from longtask.operator.observed import JobState

from longtask import tasktypes
from longtask.constants import API_VERSION, KIND
from longtask.model import TaskSpec, TaskStatus
from longtask.phases import DesiredState

_ENDED_POD_PHASES = frozenset({"Succeeded", "Failed"})


def live_pods(pods: Iterable[Mapping[str, Any]]) -> int:
    """Pods not yet ended: running, pending, or deleted but not yet confirmed stopped.

    A pod whose phase is ``Succeeded`` or ``Failed`` has no process left, whatever its
    deletion state; any other pod may still run the runner.
    """
    return sum(1 for pod in pods if (pod.get("status") or {}).get("phase") not in _ENDED_POD_PHASES)


def _controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if (
            ref.get("controller")
            and ref.get("kind") == KIND
            and ref.get("apiVersion") == API_VERSION
        ):
            found: Mapping[str, Any] = ref
            return found
    return None


def owner_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the LongTask that controls ``obj``, if one does."""
    ref = _controller(obj)
    return None if ref is None else ref.get("uid")


def owner_name(obj: Mapping[str, Any]) -> str | None:
    """The name of the LongTask that controls ``obj`` (same namespace), if one does."""
    ref = _controller(obj)
    return None if ref is None else ref.get("name")


def own_job(job: Mapping[str, Any] | None, task_uid: str) -> JobState | None:
    """The Job as :class:`JobState` if the task with ``task_uid`` controls it, else ``None``.

    A Job of the same name owned by another task is a leftover of a deleted LongTask of
    the same name: it is not this task's Job, and creating this task's Job must wait for
    it to go (the client layer must not take its ``AlreadyExists`` for success).
    """
    if job is None or owner_uid(job) != task_uid:
        return None
    return JobState.from_body(job)


def _created_at(body: Mapping[str, Any]) -> dt.datetime:
    value = body["metadata"]["creationTimestamp"]
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def concurrency_key(body: Mapping[str, Any]) -> str | None:
    """A LongTask's key: the one in its status, else the one its spec gives; ``None`` if none."""
    status = TaskStatus.from_body(body.get("status"))
    if status.concurrency_key:
        return status.concurrency_key
    try:
        return TaskSpec.model_validate(body.get("spec") or {}).effective_concurrency_key()
    except (ValueError, tasktypes.UnknownTaskType):
        return None


def key_member(body: Mapping[str, Any], task_uids_with_run_job: set[str]) -> KeyMember:
    """One LongTask as its key's admission sees it.

    ``started`` is ``status.startedAt`` or a run Job controlled by the task, so a task whose
    status write was lost after its Job was made still holds the key.
    """
    status = TaskStatus.from_body(body.get("status"))
    spec = body.get("spec") or {}
    return KeyMember(
        name=body["metadata"]["name"],
        created_at=_created_at(body),
        phase=status.phase,
        state=DesiredState(spec.get("state", DesiredState.RUNNING)),
        started=status.started_at is not None or body["metadata"]["uid"] in task_uids_with_run_job,
    )


def organization_running(
    organization: str, tasks: Iterable[Mapping[str, Any]], run_jobs: Iterable[Mapping[str, Any]]
) -> int:
    """How many of ``organization``'s ``tasks`` (one namespace's LongTasks) hold a runner:
    started (by status or by an existing run Job) and not final."""
    with_job = {uid for job in run_jobs if (uid := owner_uid(job)) is not None}
    return sum(1 for t in tasks
               if (t.get("spec") or {}).get("organization") == organization
               and key_member(t, with_job).holds_key)


def waiting_keys(organization: str, tasks: Iterable[Mapping[str, Any]]) -> set[str]:
    """The concurrency keys of ``organization``'s tasks that have not started."""
    keys = set()
    for t in tasks:
        status = TaskStatus.from_body(t.get("status"))
        if ((t.get("spec") or {}).get("organization") == organization
                and status.started_at is None
                and not (status.phase is not None and status.phase.is_final)
                and (key := concurrency_key(t)) is not None):
            keys.add(key)
    return keys


def queue_for(
    key: str, tasks: Iterable[Mapping[str, Any]], run_jobs: Iterable[Mapping[str, Any]]
) -> KeyQueue:
    """The queue of ``key`` among ``tasks`` (one namespace's LongTasks) and their run Jobs."""
    with_job = {uid for job in run_jobs if (uid := owner_uid(job)) is not None}
    members = [key_member(t, with_job) for t in tasks if concurrency_key(t) == key]
    return key_queue(members)
