"""An in-memory cluster and record store: our own implementations of the operator's client
interfaces (:class:`longtask.operator.handlers.Cluster` and
:class:`longtask.operator.records.RecordStore`), for fast tests of the handlers.

They keep objects as the API server returns them (plain dicts), apply the same rules the
real clients do (a task's own Job already there is success, a missing Job on suspend or
delete is success, an Event of an existing name is not posted twice, a status patch is a
JSON merge patch) and write every call that changes something to one shared ``journal``,
in the order made, so a test reads what the operator did across both.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import uuid
from collections.abc import Mapping
from typing import Any

from longtask.operator import observe
from longtask.operator.kube import JobNameTaken

from longtask.constants import LABEL_MODE, LABEL_TASK_UID
from longtask.model import Task
from longtask.taskrecord import RunnerRecord

Journal = list[tuple[Any, ...]]


def merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Apply an RFC 7386 merge patch to ``target`` in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class InMemoryCluster:
    """LongTasks, Jobs, pods and Events of any namespace, held in dicts."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name)
        self.events: dict[str, dict[str, Any]] = {}
        self._serial = itertools.count(1)

    # -- what a test puts in -------------------------------------------------------------
    def add(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Store ``body`` (a LongTask, Job or Pod) as the server would hold it."""
        meta = body["metadata"]
        meta.setdefault("resourceVersion", str(next(self._serial)))
        self.objects[(kind, meta["namespace"], meta["name"])] = body
        return body

    def _list(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(b) for (k, ns, _), b in sorted(self.objects.items())
                if k == kind and ns == namespace]

    # -- the Cluster protocol ------------------------------------------------------------
    def server_version(self) -> str:
        return "v0.0.0-inmemory"

    def task(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.objects.get(("LongTask", namespace, name))
        return copy.deepcopy(body) if body is not None else None

    def tasks(self, namespace: str) -> list[dict[str, Any]]:
        return self._list("LongTask", namespace)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.objects.get(("Job", namespace, name))
        return copy.deepcopy(body) if body is not None else None

    def run_jobs(self, namespace: str) -> list[dict[str, Any]]:
        return [j for j in self._list("Job", namespace)
                if (j["metadata"].get("labels") or {}).get(LABEL_MODE) == "run"]

    def task_pods(self, namespace: str, task_uid: str) -> list[dict[str, Any]]:
        return [p for p in self._list("Pod", namespace)
                if (p["metadata"].get("labels") or {}).get(LABEL_TASK_UID) == task_uid]

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> str | None:
        body = self.objects[("LongTask", namespace, name)]
        merge_patch(body.setdefault("status", {}), patch)
        body["metadata"]["resourceVersion"] = str(next(self._serial))
        self.journal.append(("patch_status", name, body["status"].get("phase")))
        return str(body["metadata"]["resourceVersion"])

    def patch_task(self, namespace: str, name: str, patch: Mapping[str, Any],
                   resource_version: str) -> bool:
        body = self.objects.get(("LongTask", namespace, name))
        if body is None or body["metadata"].get("resourceVersion") != resource_version:
            return False
        merge_patch(body, patch)
        body["metadata"]["generation"] = int(body["metadata"].get("generation", 1)) + 1
        body["metadata"]["resourceVersion"] = str(next(self._serial))
        self.journal.append(("patch_task", name, dict(patch.get("spec") or {})))
        return True

    def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str, *,
                   name: str | None = None) -> None:
        if name is not None and name in self.events:
            return
        key = name or f"{obj['metadata']['name']}.{next(self._serial)}"
        self.events[key] = {"type": type_, "reason": reason, "message": message,
                            "involvedObject": {"name": obj["metadata"]["name"]}}
        self.journal.append(("post_event", obj["metadata"]["name"], reason))

    def create_job(self, body: Mapping[str, Any], task_uid: str) -> None:
        meta = body["metadata"]
        existing = self.objects.get(("Job", meta["namespace"], meta["name"]))
        if existing is not None:
            if observe.owner_uid(existing) != task_uid:
                raise JobNameTaken(f"Job {meta['name']} belongs to another task")
            return
        job = copy.deepcopy(dict(body))
        job.setdefault("status", {})
        self.add("Job", job)
        self.journal.append(("create_job", meta["name"], bool(job["spec"].get("suspend"))))

    def set_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        job = self.objects.get(("Job", namespace, name))
        if job is None:
            return
        job["spec"]["suspend"] = suspend
        self.journal.append(("set_suspend", name, suspend))

    def delete_job(self, namespace: str, name: str, propagation: str) -> None:
        job = self.objects.get(("Job", namespace, name))
        if job is None:
            return
        # Foreground: the Job stays, marked, until its pods are gone; a test removes it.
        job["metadata"].setdefault("deletionTimestamp", "2026-01-01T00:00:00Z")
        self.journal.append(("delete_job", name, propagation))


class InMemoryRecords:
    """The runner's records and holds by task uid."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.records: dict[str, RunnerRecord] = {}
        self.holds: dict[str, str | None] = {}
        self.rate_limits: dict[str, int | None] = {}

    def read(self, uid: str) -> RunnerRecord | None:
        return self.records.get(uid)

    def hold(self, task: Task, hold: str | None) -> None:
        self.holds[task.uid] = hold
        self.journal.append(("hold", task.name, hold))

    def set_rate_limit(self, task: Task, rate_limit: int | None) -> bool:
        self.rate_limits[task.uid] = rate_limit
        self.journal.append(("rate_limit", task.name, rate_limit))
        return True


def task_body(name: str, *, namespace: str = "ns", uid: str | None = None,
              state: str = "Running", status: dict[str, Any] | None = None,
              created: dt.datetime | None = None, organization: str = "acme") -> dict[str, Any]:
    """A LongTask as the API server returns it."""
    created = created or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    body: dict[str, Any] = {
        "apiVersion": "collect.atlan.com/v1alpha1",
        "kind": "LongTask",
        "metadata": {"name": name, "namespace": namespace,
                     "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}")),
                     "generation": 1,
                     "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "spec": {"type": "BaselineUpload", "organization": organization,
                 "params": {"form": "Households",
                            "fileId": "0b9f3f9e-55d5-4a55-a1f0-8f3c6a0f0d2e"},
                 "state": state, "onTerminate": "Rollback"},
    }
    if status is not None:
        body["status"] = status
    return body


def pod_for(job: Mapping[str, Any], phase: str = "Running") -> dict[str, Any]:
    """A pod of ``job`` (labelled with its task's uid), in ``phase``."""
    labels = dict(job["spec"]["template"]["metadata"]["labels"])
    meta = job["metadata"]
    return {"metadata": {"name": f"{meta['name']}-pod", "namespace": meta["namespace"],
                         "labels": labels},
            "status": {"phase": phase}}
