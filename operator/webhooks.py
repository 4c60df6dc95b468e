"""Webhooks: each phase change of a task, sent to its organization's endpoint.

A pipeline that started an export wants to hear when it ends instead of polling. Each
organization may have one endpoint (:class:`WebhookFile`, a YAML file the chart mounts from
a Secret). Every phase change of one of its tasks is sent there as a CloudEvent
(CloudEvents 1.0, HTTP binding, binary mode: ``ce-*`` headers, the JSON data as the body;
built by the ``cloudevents`` SDK) and signed as the Standard Webhooks specification says
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">``; the ``standardwebhooks`` library), so a receiver checks it with
that library and the organization's secret and refuses a replay older than five minutes.

**At least once, in order, never blocking.** The handler that decides a phase change
writes its notification to the outbox (``longtask.notifications``, migration 0007) before
the status, as it posts the transition's Event: an operator killed in between writes it
again under the same ``event_id`` (the transition's identity), which the table refuses.
Nothing is sent on the handler's thread: the :class:`Sender` (a thread of the Lease's
holder, like the retention) takes, every ``webhook_interval_seconds``, the oldest unsent
notification of each task, at most ``webhook_per_organization`` of one organization a pass
(a slow endpoint delays its own organization only), and sends them on
``webhook_workers`` threads within ``webhook_timeout_seconds`` each. A 2xx answer marks
it sent; anything else is retried after :func:`backoff`, up to ``webhook_max_attempts``,
then given up (``failed_at``, log ``webhook_failed``), and the task's next one goes. A
receiver may see a notification twice (an answer lost, a restart): it dedupes by
``webhook-id``. Redirects are not followed.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import psycopg2.extras
import yaml
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent
from longtask.operator.errors import OperatorError
from longtask.operator.settings import OperatorSettings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from longtask.db import DatabaseUnavailable, Pool
from longtask.phases import Phase

log = logging.getLogger("longtask.operator.webhooks")

EVENT_TYPE = "com.atlan.collect.longtask.phase.changed"
PRUNE_AFTER = dt.timedelta(days=7)  # sent and given-up notifications are kept this long
_ERROR_CHARS = 300


class WebhookConfigError(OperatorError):
    """The webhooks file cannot be read or holds an invalid entry (the message says which)."""


class Endpoint(BaseModel):
    """One organization's webhook: ``url`` (http or https), ``secret`` (a Standard Webhooks
    secret, ``whsec_`` and base64) and, optionally, the ``phases`` to send (all if none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    organization: str = Field(min_length=1, max_length=63)
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    secret: str = Field(min_length=1, repr=False)
    phases: frozenset[Phase] | None = None

    @field_validator("secret")
    @classmethod
    def _decodes(cls, value: str) -> str:
        try:
            Webhook(value)
        except (ValueError, RuntimeError, EmptyWebhookSecretError) as exc:  # binascii.Error too
            raise ValueError(f"not a webhook secret (whsec_ and base64): {exc}") from None
        return value

    def wants(self, phase: Phase) -> bool:
        """Whether a change to ``phase`` is sent to this endpoint."""
        return self.phases is None or phase in self.phases


def parse(text: str, source: str) -> dict[str, Endpoint]:
    """The endpoints of a webhooks file, by organization.

    The shape is ``{"webhooks": [{"organization", "url", "secret", "phases"?}, ...]}``.
    Raises :class:`WebhookConfigError` naming ``source`` and the entry (its index and
    organization) for YAML that does not parse, an invalid entry or an organization named
    twice.
    """
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise WebhookConfigError(f"{source}: not YAML: {exc}") from None
    entries = document.get("webhooks") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise WebhookConfigError(f"{source}: expected a mapping with a list 'webhooks'")
    endpoints: dict[str, Endpoint] = {}
    for index, entry in enumerate(entries):
        where = f"{source}: webhooks[{index}]"
        if isinstance(entry, dict) and isinstance(entry.get("organization"), str):
            where += f" ({entry['organization']})"
        try:
            endpoint = Endpoint.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}"
                                 for e in exc.errors())
            raise WebhookConfigError(f"{where}: {problems}") from None
        if endpoint.organization in endpoints:
            raise WebhookConfigError(f"{where}: organization named twice")
        endpoints[endpoint.organization] = endpoint
    return endpoints


class WebhookFile:
    """The webhooks file, re-read whenever its modification time or size changes.

    A file that becomes unreadable or invalid keeps the endpoints last read (a typo in a
    Secret must not drop every organization's notifications) and logs
    ``webhooks_file_invalid`` once per change; the constructor raises
    :class:`WebhookConfigError` when the file is invalid at start, so a deployment with a
    broken file does not start.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._endpoints = self._read()

    def _read(self) -> dict[str, Endpoint]:
        try:
            stat = self.path.stat()
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WebhookConfigError(f"{self.path}: cannot be read: {exc}") from None
        endpoints = parse(text, str(self.path))
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        return endpoints

    def endpoints(self) -> Mapping[str, Endpoint]:
        """The endpoints by organization, re-read first if the file changed."""
        try:
            stat = self.path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            try:
                self._endpoints = self._read()
                log.info("webhooks_file_read", extra={"organizations": len(self._endpoints)})
            except WebhookConfigError as exc:
                self._stamp = stamp
                log.error("webhooks_file_invalid", extra={"error": str(exc)})
        return self._endpoints


@dataclass(frozen=True)
class Notification:
    """One phase change to send: the CloudEvent's ``attributes`` and ``data``."""

    event_id: str
    organization: str
    task_uid: str
    attributes: Mapping[str, str]
    data: Mapping[str, Any]


def phase_changed(*, event_id: str, body: Mapping[str, Any], organization: str,
                  task_type: str, previous: Phase | None, phase: Phase, reason: str | None,
                  message: str | None, progress: Mapping[str, Any] | None,
                  at: dt.datetime) -> Notification:
    """The notification of a LongTask's change from ``previous`` to ``phase`` at ``at``.

    ``source`` is the LongTask's path on the API server, ``subject`` its name; ``data``
    holds the organization, task, uid, type, both phases (``previousPhase`` null for a
    task's first), the condition's reason and message and the progress
    (``status.progress``'s shape).
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    return Notification(
        event_id=event_id, organization=organization, task_uid=meta["uid"],
        attributes={
            "id": event_id,
            "source": f"/apis/collect.atlan.com/v1alpha1/namespaces/{namespace}/longtasks/{name}",
            "type": EVENT_TYPE,
            "subject": name,
            "time": at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
        },
        data={"organization": organization, "namespace": namespace, "task": name,
              "uid": meta["uid"], "type": task_type,
              "previousPhase": str(previous) if previous else None,
              "phase": str(phase), "reason": reason, "message": message,
              "progress": dict(progress) if progress else None})


def backoff(attempts: int, *, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones (1 or more): a
    random time up to ``min(cap, 2 ** (attempts - 1))``, at least 0.5 s ("full jitter", as
    in the AWS Architecture Blog's "Exponential Backoff And Jitter"), so endpoints that
    come back are not hit by every sender at once."""
    ceiling = min(cap, 2.0 ** max(0, attempts - 1))
    return max(0.5, (rng or random).uniform(0, ceiling))


def request_of(notification: Notification, secret: str,
               now: dt.datetime) -> tuple[dict[str, str], bytes]:
    """The HTTP headers and body of one attempt: the CloudEvent in binary mode plus the
    Standard Webhooks headers, signed with ``secret`` at ``now``."""
    attributes: dict[str, Any] = dict(notification.attributes)
    attributes["time"] = dt.datetime.fromisoformat(attributes["time"])  # stored as text
    event = CloudEvent(attributes=attributes, data=dict(notification.data))
    message = to_binary_event(event)
    body = message.body
    headers = dict(message.headers)
    headers["webhook-id"] = notification.event_id
    headers["webhook-timestamp"] = str(int(now.timestamp()))
    headers["webhook-signature"] = Webhook(secret).sign(notification.event_id, now,
                                                        body.decode("utf-8"))
    headers["user-agent"] = "longtask-operator"
    return headers, body


class SQL:
    """The outbox's statements (``longtask.notifications``)."""

    ENQUEUE = (
        "INSERT INTO longtask.notifications (event_id, organization, task_uid, attributes, "
        "data) VALUES (%(event_id)s, %(organization)s, %(task_uid)s, %(attributes)s, "
        "%(data)s) ON CONFLICT (event_id) DO NOTHING")
    # The oldest unsent notification of each task, if due (notifications_pending).
    DUE = (
        "SELECT id, event_id, organization, task_uid::text, attributes, data, attempts "
        "FROM (SELECT DISTINCT ON (task_uid) * FROM longtask.notifications "
        "      WHERE delivered_at IS NULL AND failed_at IS NULL ORDER BY task_uid, id) o "
        "WHERE next_attempt_at <= now() ORDER BY next_attempt_at, id LIMIT %(limit)s")
    DELIVERED = (
        "UPDATE longtask.notifications SET attempts = attempts + 1, delivered_at = now(), "
        "last_error = NULL WHERE id = %(id)s")
    RETRY = (
        "UPDATE longtask.notifications SET attempts = attempts + 1, last_error = %(error)s, "
        "next_attempt_at = now() + make_interval(secs => %(delay)s) WHERE id = %(id)s")
    FAILED = (
        "UPDATE longtask.notifications SET attempts = attempts + 1, last_error = %(error)s, "
        "failed_at = now() WHERE id = %(id)s")
    PRUNE = (
        "DELETE FROM longtask.notifications WHERE id IN (SELECT id FROM "
        "longtask.notifications WHERE created_at < now() - make_interval(secs => %(age)s) "
        "AND (delivered_at IS NOT NULL OR failed_at IS NOT NULL) LIMIT 1000)")


@dataclass(frozen=True)
class Due:
    """A notification taken for sending, with the attempts made before."""

    id: int
    notification: Notification
    attempts: int


class Webhooks:
    """The operator's webhooks: :meth:`enqueue` on a handler's thread, and the
    :class:`Sender`'s passes. ``file`` is None when no webhooks are configured (then
    nothing is written and no thread runs)."""

    def __init__(self, settings: OperatorSettings, pool: Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.file = WebhookFile(settings.webhooks_file) if settings.webhooks_file else None
        self._wake = threading.Event()

    def wants(self, organization: str, phase: Phase) -> bool:
        """Whether ``organization`` has an endpoint that takes changes to ``phase``."""
        if self.file is None:
            return False
        endpoint = self.file.endpoints().get(organization)
        return endpoint is not None and endpoint.wants(phase)

    def enqueue(self, notification: Notification) -> bool:
        """Write ``notification`` to the outbox; False if its ``event_id`` is there already.
        Raises :class:`~longtask.db.DatabaseUnavailable` or ``psycopg2.Error``."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(SQL.ENQUEUE, {
                "event_id": notification.event_id, "organization": notification.organization,
                "task_uid": notification.task_uid,
                "attributes": psycopg2.extras.Json(dict(notification.attributes)),
                "data": psycopg2.extras.Json(dict(notification.data))})
            written = cur.rowcount == 1
        self._wake.set()
        return written

    def due(self) -> list[Due]:
        """The notifications to send in this pass: the oldest due one of each task, at
        most ``webhook_per_organization`` of one organization."""
        s = self.settings
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(SQL.DUE, {"limit": 50 * s.webhook_workers * s.webhook_per_organization})
            rows = cur.fetchall()
        taken: list[Due] = []
        per_org: dict[str, int] = {}
        for id_, event_id, org, task_uid, attributes, data, attempts in rows:
            if per_org.get(org, 0) >= s.webhook_per_organization:
                continue
            per_org[org] = per_org.get(org, 0) + 1
            taken.append(Due(id_, Notification(event_id, org, task_uid, attributes, data),
                             attempts))
        return taken

    def send(self, client: httpx.Client, due: Due) -> str | None:
        """One attempt; ``None`` when the endpoint answered 2xx, else why not. An
        organization without an endpoint now (the file changed) fails at once."""
        endpoint = (self.file.endpoints() if self.file else {}).get(due.notification.organization)
        if endpoint is None:
            return "no webhook for the organization any more"
        headers, body = request_of(due.notification, endpoint.secret, dt.datetime.now(dt.UTC))
        try:
            response = client.post(endpoint.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    def record(self, due: Due, error: str | None) -> None:
        """Write an attempt's outcome: sent, retried after :func:`backoff`, or given up."""
        s = self.settings
        attempts = due.attempts + 1
        with self.pool.connection() as conn, conn.cursor() as cur:
            if error is None:
                cur.execute(SQL.DELIVERED, {"id": due.id})
            elif attempts >= s.webhook_max_attempts:
                cur.execute(SQL.FAILED, {"id": due.id, "error": error})
            else:
                cur.execute(SQL.RETRY, {"id": due.id, "error": error, "delay": backoff(
                    attempts, cap=s.webhook_retry_cap_seconds)})
        fields = {"organization": due.notification.organization,
                  "task": due.notification.data.get("task"),
                  "phase": due.notification.data.get("phase"),
                  "eventId": due.notification.event_id, "attempts": attempts}
        if error is None:
            log.info("webhook_sent", extra=fields)
        elif attempts >= s.webhook_max_attempts:
            log.error("webhook_failed", extra={**fields, "error": error})
        else:
            log.warning("webhook_refused", extra={**fields, "error": error})

    def run_once(self, client: httpx.Client, pool: ThreadPoolExecutor) -> int:
        """One pass: send what is due on ``pool``'s threads and record each outcome;
        how many were attempted. Prunes old sent and given-up rows."""
        taken = self.due()

        def attempt(due: Due) -> None:
            self.record(due, self.send(client, due))

        for future in [pool.submit(attempt, d) for d in taken]:
            future.result()
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(SQL.PRUNE, {"age": PRUNE_AFTER.total_seconds()})
        return len(taken)

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less when a notification is enqueued."""
        self._wake.wait(seconds)
        self._wake.clear()


class Sender:
    """The thread that sends the webhooks (the Lease's holder only, like the retention).

    A pass that fails (the database unreachable) is logged (``webhooks_failed``) and the
    next one tries again.
    """

    def __init__(self, webhooks: Webhooks) -> None:
        self.webhooks = webhooks
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the passes on a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="longtask-webhooks",
                                        daemon=True)
        self._thread.start()
        log.info("webhooks_started", extra={
            "intervalSeconds": self.webhooks.settings.webhook_interval_seconds})

    def _loop(self) -> None:
        s = self.webhooks.settings
        timeout = httpx.Timeout(s.webhook_timeout_seconds)
        with (httpx.Client(timeout=timeout, follow_redirects=False) as client,
              ThreadPoolExecutor(s.webhook_workers, thread_name_prefix="webhook") as pool):
            while not self._stop.is_set():
                try:
                    if self.webhooks.run_once(client, pool):
                        continue  # more may be due: no sleep while there is a backlog
                except (psycopg2.Error, DatabaseUnavailable) as exc:
                    log.warning("webhooks_failed", extra={
                        "error": f"{type(exc).__name__}: {str(exc)[:_ERROR_CHARS]}"})
                self.webhooks.wait(s.webhook_interval_seconds)

    def stop(self) -> None:
        """Stop the passes (the one under way finishes)."""
        self._stop.set()
        self.webhooks._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

