"""The operator's Kubernetes client layer: a few calls, each idempotent, objects as dicts.

``AlreadyExists`` on create and ``NotFound`` on delete or patch are success, so a decision
carried out twice (operator restarted mid-handler) leaves one Job. A Job of the same name
controlled by another task (a deleted namesake's, still going) is not success: creating
this task's Job waits for it (:class:`JobNameTaken`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from longtask.operator.errors import OperatorError
from longtask.operator.observe import owner_uid

from longtask.constants import (
    GROUP,
    LABEL_MODE,
    LABEL_TASK_UID,
    PLURAL,
    VERSION,
)
from longtask.events import event_for

CONFLICT, NOT_FOUND = 409, 404
# ``source.component`` / ``reportingComponent`` of the Events the operator posts.
COMPONENT = "longtask-operator"
# An Event's message is cut to this many characters (events.k8s.io/v1 ``note`` limit: 1 kB).
log = logging.getLogger("longtask.operator")


_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
"""Accept header of a list that returns only each object's metadata."""


class JobNameTaken(OperatorError, RuntimeError):
    """A Job with this task's Job name belongs to another (deleted) task and is still there."""


class Kube:
    """Typed-enough wrappers over the ``kubernetes`` client for one API connection."""

    def __init__(self, api_client: Any) -> None:
        self._client = api_client
        self._batch: Any = client.BatchV1Api(api_client)
        self._core: Any = client.CoreV1Api(api_client)
        self._custom: Any = client.CustomObjectsApi(api_client)

    def _dict(self, obj: Any) -> dict[str, Any]:
        data: dict[str, Any] = self._client.sanitize_for_serialization(obj)
        return data

    def server_version(self) -> str:
        """The API server's ``gitVersion``, e.g. ``v1.33.1``; raises when it does not answer."""
        version: str = client.VersionApi(self._client).get_code().git_version
        return version

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job, or ``None`` when there is none."""
        try:
            return self._dict(self._batch.read_namespaced_job(name, namespace))
        except client.ApiException as exc:
            if exc.status == NOT_FOUND:
                return None
            raise

    def create_job(self, body: Mapping[str, Any], task_uid: str) -> None:
        """Create a Job; an existing Job of the same task is success."""
        meta = body["metadata"]
        try:
            self._batch.create_namespaced_job(meta["namespace"], body)
        except client.ApiException as exc:
            if exc.status != CONFLICT:
                raise
            existing = self.get_job(meta["namespace"], meta["name"])
            if existing is not None and owner_uid(existing) != task_uid:
                raise JobNameTaken(
                    f"Job {meta['name']} belongs to another task and is still being deleted"
                ) from exc

    def set_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        """Patch ``spec.suspend``; a missing Job is left to the next reconcile."""
        try:
            self._batch.patch_namespaced_job(name, namespace, {"spec": {"suspend": suspend}})
        except client.ApiException as exc:
            if exc.status != NOT_FOUND:
                raise

    def delete_job(self, namespace: str, name: str, propagation: str) -> None:
        """Delete a Job with ``propagation`` (Foreground or Background); gone is success."""
        try:
            self._batch.delete_namespaced_job(
                name, namespace, body=client.V1DeleteOptions(propagation_policy=propagation)
            )
        except client.ApiException as exc:
            if exc.status != NOT_FOUND:
                raise

    def task_pods(self, namespace: str, task_uid: str) -> list[dict[str, Any]]:
        """The task's pods, either mode, read from the server (not a cache)."""
        pods = self._core.list_namespaced_pod(
            namespace, label_selector=f"{LABEL_TASK_UID}={task_uid}"
        )
        return [self._dict(p) for p in pods.items]

    def run_jobs(self, namespace: str) -> list[dict[str, Any]]:
        """Every run Job in the namespace, metadata only (they show which tasks started).

        Asks for a ``PartialObjectMetadataList`` (``meta.k8s.io/v1``, the representation
        client-go's metadata client asks for) and reads it as plain JSON: turning whole
        Jobs into the client's object models cost about 0.5 s of CPU per call at 300
        Jobs, on every reconcile of a task waiting for its turn.
        """
        response = self._batch.list_namespaced_job(
            namespace, label_selector=f"{LABEL_MODE}=run", _preload_content=False,
            _headers={"Accept": _METADATA_LIST},
        )
        # An empty list comes as "items": null (the server's nil slice).
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

    def tasks(self, namespace: str) -> list[dict[str, Any]]:
        """Every LongTask in the namespace."""
        listed = self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        items: list[dict[str, Any]] = listed["items"]
        return items

    def all_tasks(self) -> list[dict[str, Any]]:
        """Every LongTask in the cluster (the retention's listing when cluster-wide)."""
        listed = self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        items: list[dict[str, Any]] = listed["items"]
        return items

    def task(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One LongTask, fresh from the server, or ``None`` when it is gone."""
        try:
            body: dict[str, Any] = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
            return body
        except client.ApiException as exc:
            if exc.status == NOT_FOUND:
                return None
            raise

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> str | None:
        """Merge-patch ``status`` through the status subresource; the new resourceVersion."""
        updated = self._custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": dict(patch)}
        )
        version = (updated.get("metadata") or {}).get("resourceVersion") if updated else None
        return str(version) if version else None

    def patch_task(self, namespace: str, name: str, patch: Mapping[str, Any],
                   resource_version: str) -> bool:
        """Merge-patch the LongTask (its ``spec`` and annotations), conditional on
        ``resource_version``: False when the task changed since (or is gone)."""
        body = {**patch, "metadata": {**dict(patch.get("metadata") or {}),
                                      "resourceVersion": resource_version}}
        try:
            self._custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                        name, body)
        except client.ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    def post_event(
        self,
        obj: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        *,
        name: str | None = None,
    ) -> None:
        """Post a core/v1 Event about ``obj`` (a LongTask as read from the server).

        With ``name``, an Event of that name already there is success: the same Event
        posted again (by an operator restarted mid-reconcile) is not repeated.
        Events are a record for people (``kubectl describe lt``); one that cannot be posted
        is logged (``event_not_posted``) and does not stop the reconcile.
        """
        meta = obj["metadata"]
        event = event_for(obj, type_, reason, message, component=COMPONENT, name=name)
        try:
            self._core.create_namespaced_event(meta["namespace"], event)
        except client.ApiException as exc:
            if name and exc.status == CONFLICT:
                log.info("event_already_posted", extra={"task": meta["name"], "reason": reason})
                return
            log.warning(
                "event_not_posted",
                extra={"task": meta["name"], "reason": reason, "status": exc.status},
            )
            return
        log.info(
            "event_posted",
            extra={
                "task": meta["name"],
                "namespace": meta["namespace"],
                "type": type_,
                "reason": reason,
                "note": message,
            },
        )
