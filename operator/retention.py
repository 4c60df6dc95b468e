"""The storage retention: files and export outputs are given back once no task needs them.

Runs in the operator, on a thread the start-up handler starts and the clean-up handler
stops, so only where kopf runs: in the Lease's holder (``leader.py``), or the one
standalone process. The operator is the component that sees every LongTask's phase; the
database alone cannot tell a paused task from one terminated with ``Keep``, and a task
queued before its first run has no record there at all.

Every ``retention_interval_seconds`` a pass lists the LongTasks afresh and decides
(:func:`plan`, pure), for every stored file and export output:

- used by a task that is not final (any phase but Succeeded, Failed, RolledBack and
  Terminated, including Pending, Queued, Paused and a Terminated request whose rollback has
  not finished), or by a task being deleted: no expiry (``expires_at`` NULL);
- used only by final tasks: the last one's end (``status.finishedAt``) plus
  ``storage_retention_seconds``;
- used once, by tasks since deleted: the pass's time plus the retention (once);
- never used: its upload plus ``unused_file_retention_seconds`` (the API writes it).

What has expired is removed (blocks or parts deleted, the row kept as a tombstone so the
API answers 410), one object per transaction with its row in ``longtask.storage_removals``
and a ``storage_removed`` log line. A pass whose listing fails does nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg2
import urllib3
from kubernetes.client.exceptions import ApiException
from longtask.operator.settings import OperatorSettings

from longtask import storage
from longtask.db import DatabaseUnavailable, Pool
from longtask.phases import FINAL_PHASES, Phase

log = logging.getLogger("longtask.operator.retention")


class TaskLister(Protocol):
    """What the retention needs of the API server (:class:`~longtask.operator.kube.Kube`)."""

    def tasks(self, namespace: str) -> list[dict[str, Any]]:
        """Every LongTask in the namespace."""
        ...

    def all_tasks(self) -> list[dict[str, Any]]:
        """Every LongTask in the cluster."""
        ...


@dataclass(frozen=True)
class TaskUse:
    """What the retention reads of one LongTask."""

    uid: uuid.UUID
    name: str
    namespace: str
    file_id: uuid.UUID | None
    in_use: bool
    ended_at: dt.datetime | None


def _timestamp(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def use_of(body: Mapping[str, Any]) -> TaskUse | None:
    """The task's use of storage; None for a body without a uid."""
    meta = body.get("metadata") or {}
    try:
        uid = uuid.UUID(str(meta.get("uid")))
    except ValueError:
        return None
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    raw = (spec.get("params") or {}).get("fileId")
    try:
        file_id = uuid.UUID(str(raw)) if raw is not None else None
    except ValueError:
        file_id = None
    try:
        phase = Phase(status.get("phase") or Phase.PENDING)
    except ValueError:
        phase = Phase.PENDING  # a phase this operator does not know: treat as in use
    final = phase in FINAL_PHASES and not meta.get("deletionTimestamp")
    ended = (_timestamp(status.get("finishedAt")) or _timestamp(status.get("phaseSince"))
             if final else None)
    return TaskUse(uid, str(meta.get("name")), str(meta.get("namespace")), file_id,
                   in_use=not final, ended_at=ended)


@dataclass(frozen=True)
class Expiry:
    """A decided expiry: ``at`` (None: in use), ``used`` (a task uses or used it), why."""

    at: dt.datetime | None
    used: bool
    reason: str


@dataclass
class Plan:
    """What one pass writes: each object's expiry, and the objects to remove now."""

    files: dict[uuid.UUID, Expiry] = field(default_factory=dict)
    outputs: dict[uuid.UUID, Expiry] = field(default_factory=dict)

    def due(self, now: dt.datetime) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """(files, outputs) whose expiry is at or before ``now``."""
        return ([i for i, e in self.files.items() if e.at is not None and e.at <= now],
                [i for i, e in self.outputs.items() if e.at is not None and e.at <= now])


def _after_users(users: list[TaskUse], retention: dt.timedelta, now: dt.datetime,
                 current: dt.datetime | None) -> Expiry:
    busy = [u for u in users if u.in_use]
    if busy:
        return Expiry(None, True, f"in use by {busy[0].namespace}/{busy[0].name}")
    last = max(users, key=lambda u: u.ended_at or now)
    if last.ended_at is None:  # final without an end time: from the first pass that saw it
        return Expiry(current or now + retention, True,
                      f"the last task that used it, {last.namespace}/{last.name}, ended; "
                      f"retention {int(retention.total_seconds())} s")
    ended = last.ended_at
    return Expiry(ended + retention, True,
                  f"the last task that used it, {last.namespace}/{last.name}, ended at "
                  f"{ended.isoformat()}; retention {int(retention.total_seconds())} s")


def plan(uses: Iterable[TaskUse], files: Iterable[storage.LiveFile],
         outputs: Iterable[storage.LiveOutput], *, now: dt.datetime,
         retention_seconds: float, unused_seconds: float,
         watched: tuple[str, ...]) -> Plan:
    """Decide every stored object's expiry from the tasks listed (see the module's rules).

    ``watched``: the namespaces listed (empty: all); an export record of another namespace
    is left alone. Pure: no I/O.
    """
    retention = dt.timedelta(seconds=retention_seconds)
    by_file: dict[uuid.UUID, list[TaskUse]] = {}
    by_uid: dict[uuid.UUID, TaskUse] = {}
    for use in uses:
        by_uid[use.uid] = use
        if use.file_id is not None:
            by_file.setdefault(use.file_id, []).append(use)
    result = Plan()
    for f in files:
        users = by_file.get(f.id)
        if users:
            result.files[f.id] = _after_users(users, retention, now, f.expires_at)
        elif f.first_used_at is not None:
            result.files[f.id] = Expiry(
                f.expires_at or now + retention, True,
                f"the tasks that used it are gone; retention {int(retention_seconds)} s")
        else:
            result.files[f.id] = Expiry(
                f.expires_at or f.created_at + dt.timedelta(seconds=unused_seconds), False,
                f"no task used it within the unused-file retention "
                f"({int(unused_seconds)} s) after its upload")
    for o in outputs:
        if watched and o.namespace not in watched:
            continue
        task = by_uid.get(o.uid)
        if task is not None:
            result.outputs[o.uid] = _after_users([task], retention, now, o.expires_at)
        else:
            result.outputs[o.uid] = Expiry(
                o.expires_at or now + retention, True,
                f"its export task is gone; retention {int(retention_seconds)} s")
    return result


class Retention:
    """The retention's passes over the operator's database and cluster (a thread).

    :meth:`run_once` is one pass; :meth:`start` runs one every ``retention_interval_seconds``
    until :meth:`stop`. A pass that fails (API server or database unreachable) is logged
    (``retention_failed``) and the next one tries again.
    """

    def __init__(self, settings: OperatorSettings, lister: TaskLister, pool: Pool) -> None:
        self.settings = settings
        self.lister = lister
        self.pool = pool
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _listed(self) -> list[TaskUse]:
        namespaces = self.settings.namespaces
        bodies = ([b for ns in namespaces for b in self.lister.tasks(ns)] if namespaces
                  else self.lister.all_tasks())
        return [u for u in map(use_of, bodies) if u is not None]

    def run_once(self) -> list[storage.Removal]:
        """One pass: list the tasks, write the expiries, remove what expired; the removals."""
        s = self.settings
        with self.pool.connection(autocommit=False) as conn:
            listing_started = storage.now(conn)
            conn.rollback()
            uses = self._listed()
            files = storage.live_files(conn)
            outputs = storage.live_outputs(conn)
            now = storage.now(conn)
            conn.rollback()
            decided = plan(uses, files, outputs, now=now,
                           retention_seconds=s.storage_retention_seconds,
                           unused_seconds=s.unused_file_retention_seconds,
                           watched=s.namespaces)
            listed_before = listing_started - dt.timedelta(
                seconds=s.retention_claim_grace_seconds)
            current = {f.id: f.expires_at for f in files}
            for file_id, expiry in decided.files.items():
                if expiry.at != current.get(file_id):
                    storage.set_file_expiry(conn, file_id, expiry.at, used=expiry.used,
                                            listed_before=listed_before)
            current = {o.uid: o.expires_at for o in outputs}
            for uid, expiry in decided.outputs.items():
                if expiry.at != current.get(uid):
                    storage.set_output_expiry(conn, uid, expiry.at)
            due_files, due_outputs = decided.due(now)
            removed = []
            for file_id in due_files:
                done = storage.remove_file(conn, file_id, decided.files[file_id].reason)
                if done is not None:
                    removed.append(done)
            for uid in due_outputs:
                done = storage.remove_output(conn, uid, decided.outputs[uid].reason)
                if done is not None:
                    removed.append(done)
        for r in removed:
            log.info("storage_removed", extra={
                "kind": r.kind, "id": str(r.object_id), "organization": r.organization,
                "bytes": r.bytes, "removedAt": r.removed_at.isoformat(), "reason": r.reason})
        return removed

    def start(self) -> None:
        """Run a pass every ``retention_interval_seconds`` on a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="longtask-retention",
                                        daemon=True)
        self._thread.start()
        log.info("retention_started", extra={
            "intervalSeconds": self.settings.retention_interval_seconds,
            "retentionSeconds": self.settings.storage_retention_seconds,
            "unusedFileRetentionSeconds": self.settings.unused_file_retention_seconds})

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except (psycopg2.Error, DatabaseUnavailable, ApiException,
                    urllib3.exceptions.HTTPError, OSError) as exc:
                log.warning("retention_failed", extra={
                    "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            self._stop.wait(self.settings.retention_interval_seconds)

    def stop(self) -> None:
        """Stop the passes (the one under way finishes) and close the pool."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.pool.close()
