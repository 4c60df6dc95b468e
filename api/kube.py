"""The API's Kubernetes client layer: LongTasks of one namespace, their Events, a watch.

Objects are plain dicts as the server sends them. Calls are bounded by a timeout. The API
only reads LongTasks, creates them, merge-patches (RFC 7386) their ``spec`` and
``metadata``, and deletes them (the operator's finalizer then stops their Jobs); it never
writes ``status``. Errors other than the expected ones
(not found, conflict, invalid) become :class:`KubeUnavailable` or :class:`KubeError`, which
the app answers with 503 and 502 problems.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from longtask.api.errors import ApiError

from longtask.constants import API_VERSION, GROUP, KIND, PLURAL, VERSION
from longtask.events import event_for

log = logging.getLogger("longtask.api.kube")

NOT_FOUND, CONFLICT, GONE, INVALID = 404, 409, 410, 422
COMPONENT = "longtask-api"


class KubeUnavailable(ApiError, RuntimeError):
    """The Kubernetes API server cannot be reached or answered 5xx; retry later."""


class KubeError(ApiError, RuntimeError):
    """The Kubernetes API server refused a call the API expects to succeed (a bug or RBAC)."""


class NotFound(ApiError):
    """The object does not exist."""


class Conflict(ApiError):
    """The object changed since it was read (``resourceVersion``) or already exists."""


class Invalid(ApiError):
    """The server's validation refused the object: ``causes`` as ``(field, message)``."""

    def __init__(self, message: str, causes: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.message = message
        self.causes = causes


def load_api_client(kubeconfig: Path | None, pool_size: int) -> Any:
    """An ``ApiClient``: from ``kubeconfig``, else in-cluster, else ``~/.kube/config``."""
    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(config_file=str(kubeconfig),  # type: ignore[no-untyped-call]
                                client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = 1
    return client.ApiClient(configuration)


def _translate(exc: Exception) -> Exception:
    """Map a client exception to this module's errors (or return it when it is expected)."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        if status == NOT_FOUND:
            return NotFound(_message(exc))
        if status == CONFLICT:
            return Conflict(_message(exc))
        if status == INVALID:
            return _invalid(exc)
        if status == 0 or status >= 500 or status == 429:
            return KubeUnavailable(f"Kubernetes API answered {status}: {_message(exc)}")
        return KubeError(f"Kubernetes API answered {status}: {_message(exc)}")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return KubeUnavailable(f"Kubernetes API unreachable: {type(exc).__name__}")
    return exc


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body: dict[str, Any] = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _message(exc: ApiException) -> str:
    return str(_status_body(exc).get("message") or exc.reason or "no message")


def _invalid(exc: ApiException) -> Invalid:
    body = _status_body(exc)
    causes = [
        (str(c.get("field") or ""), str(c.get("message") or ""))
        for c in (body.get("details") or {}).get("causes") or []
    ]
    return Invalid(str(body.get("message") or "invalid"), causes)


class Tasks:
    """LongTasks of one namespace, their Events, and a watch on one of them."""

    def __init__(self, api_client: Any, namespace: str, timeout: float) -> None:
        self._client = api_client
        self._custom: Any = client.CustomObjectsApi(api_client)
        self._core: Any = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.timeout = timeout

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            return fn(*args, **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc) from exc

    def get(self, name: str) -> dict[str, Any] | None:
        """The LongTask ``name``, or ``None`` when there is none."""
        try:
            body: dict[str, Any] = self._call(
                self._custom.get_namespaced_custom_object, GROUP, VERSION, self.namespace,
                PLURAL, name)
        except NotFound:
            return None
        return body

    def list_all(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Every LongTask of the namespace, or those ``label_selector`` selects (the server
        pages, this joins the pages)."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        selector = {"label_selector": label_selector} if label_selector else {}
        while True:
            page = self._call(self._custom.list_namespaced_custom_object, GROUP, VERSION,
                              self.namespace, PLURAL, limit=500, _continue=token, **selector)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a LongTask; :class:`Conflict` when the name is taken, :class:`Invalid`."""
        full = {"apiVersion": API_VERSION, "kind": KIND, **body}
        created: dict[str, Any] = self._call(
            self._custom.create_namespaced_custom_object, GROUP, VERSION, self.namespace,
            PLURAL, full)
        return created

    def patch(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        """JSON merge patch (RFC 7386) of ``spec``/``metadata``; ``None`` when gone.

        Put ``metadata.resourceVersion`` in ``patch`` to make it conditional: the server
        then answers :class:`Conflict` if the object changed since it was read.
        """
        try:
            body: dict[str, Any] = self._call(
                self._custom.patch_namespaced_custom_object, GROUP, VERSION, self.namespace,
                PLURAL, name, dict(patch))
        except NotFound:
            return None
        return body

    def delete(self, name: str, resource_version: str) -> dict[str, Any] | None:
        """Delete the LongTask ``name`` if it is still at ``resource_version``.

        The LongTask as it stands when a finalizer keeps it (``deletionTimestamp`` set),
        ``None`` when it is gone at once or was already; :class:`Conflict` when it changed
        since it was read.
        """
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=resource_version))
        try:
            answer: dict[str, Any] = self._call(
                self._custom.delete_namespaced_custom_object, GROUP, VERSION, self.namespace,
                PLURAL, name, body=options)
        except NotFound:
            return None
        # The server answers with the object while a finalizer keeps it, else a Status.
        return answer if answer.get("kind") == KIND else None

    def events(self, uid: str) -> list[dict[str, Any]]:
        """Core/v1 Events whose ``involvedObject`` is the LongTask with ``uid``."""
        listed = self._call(self._core.list_namespaced_event, self.namespace,
                            field_selector=f"involvedObject.uid={uid}",
                            _preload_content=False)
        data: dict[str, Any] = json.loads(listed.data)
        items: list[dict[str, Any]] = data.get("items") or []
        return items

    def post_event(self, task: Mapping[str, Any], reason: str, action: str, message: str,
                   type_: str = "Normal") -> None:
        """Post an Event about ``task`` as ``longtask-api``; a failure is logged, not raised.

        The record of a control request must not make the request fail: the annotations on
        the LongTask carry the same facts.
        """
        meta = task["metadata"]
        event = event_for({**task, "metadata": {**meta, "namespace": self.namespace}},
                          type_, reason, message, component=COMPONENT, action=action)
        try:
            self._call(self._core.create_namespaced_event, self.namespace, event,
                       _preload_content=False)
        except (KubeError, KubeUnavailable, Conflict, Invalid, NotFound) as exc:
            log.warning("event_not_posted", extra={"task": meta["name"], "reason": reason,
                                                   "error": str(exc)})

    def ping(self) -> None:
        """List one LongTask: proves the server, the CRD and the API's permission to read."""
        self._call(self._custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                   PLURAL, limit=1, _request_timeout=min(self.timeout, 3.0))

    def watch(self, name: str, resource_version: str,
              timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(type, object)`` for changes of one LongTask after ``resource_version``.

        Ends after ``timeout_seconds`` (the server closes the watch). Raises
        :class:`ResourceExpired` when ``resource_version`` is too old to watch from.
        """
        w = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in w.stream(  # type: ignore[no-untyped-call]
                self._custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                PLURAL, field_selector=f"metadata.name={name}", resource_version=resource_version,
                timeout_seconds=timeout_seconds, allow_watch_bookmarks=False,
                _request_timeout=timeout_seconds + self.timeout,
            ):
                kind = str(event.get("type"))
                obj = event.get("object")
                if kind == "ERROR":
                    code = obj.get("code") if isinstance(obj, dict) else None
                    if code == GONE:
                        raise ResourceExpired(str(obj))
                    raise KubeUnavailable(f"watch failed: {obj}")
                if isinstance(obj, dict):
                    yield kind, obj
        except ApiException as exc:
            if exc.status == GONE:
                raise ResourceExpired(_message(exc)) from exc
            raise _translate(exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(exc) from exc
        finally:
            w.stop()  # type: ignore[no-untyped-call]


class ResourceExpired(ApiError):
    """The watch's ``resourceVersion`` is older than the server keeps (HTTP 410 Gone)."""
