"""The kopf handlers: each finds its task, calls :func:`.decide.decide`, acts through :mod:`.kube`.

Run with ``python -m longtask.operator`` (see ``__main__``), which calls :func:`register`
with its settings; nothing is read or connected at import. The start-up handler puts an
:class:`Operator` (settings, the :class:`Cluster` client, the :class:`RecordStore`, the key
locks) in kopf's memo, and every handler works with that one, so :func:`reconcile` runs as
well over an in-memory cluster (``tests/operator/test_handlers.py``). A LongTask is reconciled when
it appears, when the operator starts, when its ``spec`` changes, when one of its Jobs
changes (a pod gone, a Job complete or failed) and on a timer that refreshes progress from
the runner's record. All decisions of one concurrency key are serialized by a lock. A
decision's Events are posted first, then its status is written, then its actions are carried
out: the key's holder is visible before its Job exists, and a transition's Event is never
lost to a crash between the status write and the post.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import kopf
import psycopg2
from kubernetes import client, config
from longtask.operator import observe
from longtask.operator.actions import (
    Action,
    CreateRollbackJob,
    CreateRunJob,
    DeleteJob,
    HoldRun,
    PatchSpec,
    PostEvent,
    ReleaseKey,
    ReleaseRun,
    ResumeJob,
    SetRateLimit,
    SuspendJob,
)
from longtask.operator.decide import decide, decide_deletion
from longtask.operator.kube import JobNameTaken, Kube
from longtask.operator.manifests import build_rollback_job, build_run_job
from longtask.operator.names import event_name, job_name
from longtask.operator.observed import Observed
from longtask.operator.records import Records, RecordStore
from longtask.operator.retention import Retention
from longtask.operator.settings import OperatorSettings
from longtask.operator.webhooks import Sender, Webhooks, phase_changed

from longtask.constants import FINALIZER, GROUP, LABEL_TASK_UID, PLURAL, VERSION
from longtask.db import DatabaseUnavailable, Pool
from longtask.model import Task, TaskStatus, status_patch
from longtask.settings import DatabaseSettings

log = logging.getLogger("longtask.operator")
# Seconds before kopf calls a handler again after it raised something unexpected (kopf's own
# default is 60 s: far too long for a pause a person is waiting for).
RETRY_SECONDS = 5.0
HANDLER_THREADS = 8  # kopf's sync handlers run in a pool of this size
# A wake-up comes this much after its bound: status times are whole seconds, so a
# reconcile right at the bound could still round it to the second before.
WAKE_MARGIN_SECONDS = 0.05


class Cluster(Protocol):
    """What the handlers need of the API server (:class:`~longtask.operator.kube.Kube`);
    objects are plain dicts as the server returns them."""

    def server_version(self) -> str:
        """The API server's ``gitVersion``; raises when it does not answer."""
        ...

    def task(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One LongTask, fresh, or ``None`` when it is gone."""
        ...

    def tasks(self, namespace: str) -> list[dict[str, Any]]:
        """Every LongTask in the namespace."""
        ...

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job, or ``None``."""
        ...

    def run_jobs(self, namespace: str) -> list[dict[str, Any]]:
        """Every run Job in the namespace (metadata is enough)."""
        ...

    def task_pods(self, namespace: str, task_uid: str) -> list[dict[str, Any]]:
        """The task's pods, either mode, fresh."""
        ...

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> str | None:
        """Merge-patch the LongTask's ``status``; its new resourceVersion."""
        ...

    def patch_task(self, namespace: str, name: str, patch: Mapping[str, Any],
                   resource_version: str) -> bool:
        """Merge-patch the LongTask (spec, annotations) at ``resource_version``; False when
        it changed since or is gone."""
        ...

    def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str, *,
                   name: str | None = None) -> None:
        """Post an Event about ``obj``; one of the same ``name`` already there is success."""
        ...

    def create_job(self, body: Mapping[str, Any], task_uid: str) -> None:
        """Create a Job; the task's own Job already there is success; raises
        :class:`~longtask.operator.kube.JobNameTaken` for another task's."""
        ...

    def set_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        """Patch the Job's ``spec.suspend``; a missing Job is success."""
        ...

    def delete_job(self, namespace: str, name: str, propagation: str) -> None:
        """Delete the Job with ``propagation``; a missing Job is success."""
        ...


class KeyLocks:
    """One re-entrant lock per (namespace, concurrency key): a key's decisions one at a time."""

    def __init__(self) -> None:
        self._locks: defaultdict[tuple[str, str], threading.RLock] = defaultdict(threading.RLock)
        self._guard = threading.Lock()

    def __call__(self, namespace: str, key: str) -> threading.RLock:
        """The lock of ``key`` in ``namespace``, made on first use."""
        with self._guard:
            return self._locks[(namespace, key)]


class Wakeups:
    """At most one reconcile pending per task (a daemon ``threading.Timer``), for a bound
    (``Decision.wake_at``) due before the next timer of kopf would see it.

    They live in the process that runs the handlers, the Lease's holder (or the one
    standalone process); a holder that loses the Lease exits, and its timers with it.
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], tuple[float, threading.Timer]] = {}
        self._lock = threading.Lock()

    def schedule(self, namespace: str, name: str, delay: float,
                 wake: Callable[[], None]) -> None:
        """Call ``wake`` in ``delay`` seconds, unless one is pending for the task as soon."""
        key, due = (namespace, name), time.monotonic() + max(0.0, delay)
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None and pending[0] <= due:
                return
            if pending is not None:
                pending[1].cancel()
            timer = threading.Timer(max(0.0, delay), self._fire, (key, wake))
            timer.daemon = True
            self._pending[key] = (due, timer)
            timer.start()

    def _fire(self, key: tuple[str, str], wake: Callable[[], None]) -> None:
        with self._lock:
            self._pending.pop(key, None)
        try:
            wake()
        except Exception as exc:  # noqa: BLE001  # kopf's timer reconciles it again
            log.warning("wakeup_failed", extra={"task": key[1], "namespace": key[0],
                                                "error": str(exc)})

    def close(self) -> None:
        """Cancel every pending reconcile."""
        with self._lock:
            for _, timer in self._pending.values():
                timer.cancel()
            self._pending.clear()


@dataclass
class Operator:
    """What every handler works with, made once at start-up and kept in kopf's memo."""

    settings: OperatorSettings
    kube: Cluster
    records: RecordStore
    locks: KeyLocks = field(default_factory=KeyLocks)
    wakeups: Wakeups = field(default_factory=Wakeups)
    webhooks: Webhooks | None = None


def _operator(memo: Any) -> Operator:
    """The :class:`Operator` the start-up handler put in kopf's memo."""
    operator: Operator = memo.operator
    return operator


def register(settings: OperatorSettings,
             registry: kopf.OperatorRegistry | None = None) -> kopf.OperatorRegistry:
    """Register the handlers (with ``settings``' timer interval) in ``registry``, kopf's
    default one unless given; run kopf with ``memo=kopf.Memo(settings=settings)``."""
    registry = registry if registry is not None else kopf.get_default_registry()
    kopf.on.startup(registry=registry)(configure)
    kopf.on.cleanup(registry=registry)(close)
    kopf.on.probe(id="apiServer", registry=registry)(api_server_version)
    for decorate in (
        kopf.on.resume(GROUP, VERSION, PLURAL, id="resumed", backoff=RETRY_SECONDS,
                       registry=registry),
        kopf.on.create(GROUP, VERSION, PLURAL, id="created", backoff=RETRY_SECONDS,
                       registry=registry),
        kopf.on.update(GROUP, VERSION, PLURAL, field="spec", id="spec_changed",
                       backoff=RETRY_SECONDS, registry=registry),
    ):
        decorate(on_change)
    kopf.timer(GROUP, VERSION, PLURAL, interval=settings.progress_interval_seconds,
               backoff=RETRY_SECONDS, registry=registry)(on_timer)
    kopf.on.event("batch", "v1", "jobs", labels={LABEL_TASK_UID: kopf.PRESENT},
                  registry=registry)(on_job_event)
    kopf.on.delete(GROUP, VERSION, PLURAL, id="cleanup", backoff=RETRY_SECONDS,
                   registry=registry)(on_delete)
    return registry


def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Every kopf setting the operator relies on, each with its reason; then log in and
    put the :class:`Operator` in ``memo`` (which holds ``settings``: OperatorSettings)."""
    ours: OperatorSettings = memo.settings
    # Our own finalizer and annotation prefix: the resource carries no kopf.zalando.org keys.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # Long idle periods: the server ends a watch after server_timeout and kopf opens a new
    # one; the client timeout is a little longer so a silent, dead connection is noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # Events for transitions are posted by the handlers themselves (synchronously, before
    # the next action); kopf's own go only for its errors.
    settings.posting.level = logging.WARNING
    # The namespaces and resources are known in advance, and least-privilege RBAC refuses
    # kopf's cluster-wide scan of namespaces and CRDs (it would retry for a minute at start).
    settings.scanning.disabled = True
    # Peering (one active replica) and the watched namespaces come from OperatorSettings
    # through kopf.run() in __main__, so the command line cannot disagree with them.
    config.load_config()  # type: ignore[no-untyped-call]  # in-cluster, else KUBECONFIG
    api = client.ApiClient()
    # The name in the objects' managedFields and in the API server's audit log.
    api.user_agent = "longtask-operator"
    # One database connection for each of kopf's handler threads, so none waits on the pool.
    settings.execution.max_workers = HANDLER_THREADS
    records = Records(DatabaseSettings().database_url,  # type: ignore[call-arg]
                      max_connections=HANDLER_THREADS)
    kube = Kube(api)
    memo.operator = Operator(settings=ours, kube=kube, records=records)
    # The storage retention runs where kopf runs: in the Lease's holder only.
    memo.retention = Retention(ours, kube, Pool(DatabaseSettings().database_url,  # type: ignore[call-arg]
                                                1, application_name="longtask-retention"))
    memo.retention.start()
    # The webhooks (none unless a file names their endpoints): written by the handlers,
    # sent by a thread of their own, here too in the Lease's holder only.
    if ours.webhooks_file is not None:
        webhooks = Webhooks(ours, Pool(DatabaseSettings().database_url,  # type: ignore[call-arg]
                                       2, application_name="longtask-webhooks"))
        memo.operator.webhooks = webhooks
        memo.sender = Sender(webhooks)
        memo.sender.start()
    log.info(
        "operator_started",
        extra={"namespaces": list(ours.namespaces) or "*", "standalone": ours.standalone},
    )


def close(memo: Any, **_: Any) -> None:
    """Stop the retention and close the database pools on shutdown."""
    retention: Retention | None = getattr(memo, "retention", None)
    if retention is not None:
        retention.stop()
    sender: Sender | None = getattr(memo, "sender", None)
    if sender is not None:
        sender.stop()
        sender.webhooks.pool.close()
    operator: Operator | None = getattr(memo, "operator", None)
    if operator is not None:
        operator.wakeups.close()
    if operator is not None and isinstance(operator.records, Records):
        operator.records.close()


def api_server_version(memo: Any, **_: Any) -> str:
    """Liveness: the API server answers with its version (raises when it does not)."""
    return _operator(memo).kube.server_version()


def on_change(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A LongTask appeared, the operator started, or its spec changed: reconcile it now."""
    reconcile(_operator(memo), _namespaced(namespace), name)


def on_timer(body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Every few seconds: progress from the runner's record, pods gone, keys freed."""
    if not _is_final(body) and not body.metadata.get("deletionTimestamp"):
        reconcile(_operator(memo), _namespaced(namespace), name)


def on_job_event(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    """A task's Job changed (pod gone, complete, failed, deleted): reconcile its task now.

    Without this, a pause or a terminate would wait for the timer to see the pod gone.
    """
    owner = observe.owner_name(body)
    if owner is not None:
        reconcile(_operator(memo), _namespaced(namespace), owner)


def on_delete(body: kopf.Body, memo: Any, **_: Any) -> None:
    """Stop the task's runners; keep the finalizer until no pod and no Job is left."""
    op = _operator(memo)
    fresh = dict(body)
    task = Task.from_body(fresh)
    cleanup = decide_deletion(task, TaskStatus.from_body(fresh.get("status")),
                              _observe(op, task))
    _carry_out(op, task, fresh, cleanup.actions)
    if not cleanup.done:
        raise kopf.TemporaryError("waiting for the task's runner pods and Jobs to go", delay=2)
    log.info("task_released", extra={"task": task.name, "namespace": task.namespace})


def reconcile(op: Operator, namespace: str, name: str) -> None:
    """Decide and act for one LongTask, under its concurrency key's lock.

    The task is read fresh from the API server inside the lock, so two reconciles of one
    key (a timer, a Job event, a freed key) never decide from the same stale status.
    Raises ``kopf.TemporaryError`` when the runner's database cannot be read.
    """
    body = op.kube.task(namespace, name)
    if body is None:
        return
    key = observe.concurrency_key(body) or body["metadata"]["uid"]
    with op.locks(namespace, key):
        fresh = op.kube.task(namespace, name)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return
        task = Task.from_body(fresh)
        status = TaskStatus.from_body(fresh.get("status"))
        decision = decide(task, status, _observe(op, task, status), dt.datetime.now(dt.UTC))
        # Events before the status: an operator killed between the two posts them again,
        # under the same names (refused as already there), instead of finding the status
        # moved and the transition's Event never posted.
        for event in (a for a in decision.actions if isinstance(a, PostEvent)):
            op.kube.post_event(
                fresh,
                event.type,
                event.reason,
                event.message,
                name=event_name(
                    task.name, task.uid, task.generation, status.phase, status.phase_since,
                    event.reason,
                ),
            )
        # The webhook's notification too, for the same reason: written again after a crash,
        # under the same id, it is refused as already there.
        if decision.status.phase is not status.phase and decision.status.phase is not None:
            _notify(op, task, fresh, status, decision.status)
        patch = status_patch(status, decision.status)
        if patch:
            version = op.kube.patch_status(task.namespace, task.name, patch)
            if version:  # the version a PatchSpec among the actions is conditional on
                fresh["metadata"]["resourceVersion"] = version
        if decision.status.phase is not status.phase:
            log.info(
                "phase_changed",
                extra={
                    "task": task.name,
                    "namespace": task.namespace,
                    "from": status.phase,
                    "to": decision.status.phase,
                    "reason": decision.status.conditions[0].reason
                    if decision.status.conditions
                    else None,
                },
            )
        _carry_out(
            op, task, fresh, tuple(a for a in decision.actions if not isinstance(a, PostEvent))
        )
    if decision.wake_at is not None:
        delay = (decision.wake_at - dt.datetime.now(dt.UTC)).total_seconds()
        # A bound further off than kopf's next timer is scheduled by a later reconcile.
        if delay < op.settings.progress_interval_seconds:
            op.wakeups.schedule(namespace, name, delay + WAKE_MARGIN_SECONDS,
                                lambda: reconcile(op, namespace, name))


def _notify(op: Operator, task: Task, body: Mapping[str, Any], before: TaskStatus,
            after: TaskStatus) -> None:
    """Write the webhook notification of the change from ``before`` to ``after`` to the
    outbox, if the task's organization wants it (``webhooks.py``). Raises
    ``kopf.TemporaryError`` when the database cannot be written."""
    webhooks = op.webhooks
    assert after.phase is not None
    if webhooks is None or not webhooks.wants(task.spec.organization, after.phase):
        return
    condition = after.conditions[0] if after.conditions else None
    notification = phase_changed(
        event_id=event_name(task.uid, before.phase, before.phase_since, after.phase),
        body=body, organization=task.spec.organization, task_type=task.spec.type,
        previous=before.phase, phase=after.phase,
        reason=condition.reason if condition else None, message=after.message,
        progress=after.progress.model_dump(by_alias=True, mode="json")
        if after.progress else None,
        at=after.phase_since or dt.datetime.now(dt.UTC))
    try:
        webhooks.enqueue(notification)
    except (psycopg2.Error, DatabaseUnavailable) as exc:
        raise kopf.TemporaryError(f"webhook outbox unwritable: {exc}", delay=10) from exc


def _namespaced(namespace: str | None) -> str:
    """LongTasks and Jobs are namespaced: kopf always names the namespace."""
    if namespace is None:
        raise kopf.PermanentError("a LongTask or Job without a namespace")
    return namespace


def _observe(op: Operator, task: Task, status: TaskStatus | None = None) -> Observed:
    kube = op.kube
    run = observe.own_job(kube.get_job(task.namespace, job_name(task.name, "run")), task.uid)
    rollback = observe.own_job(
        kube.get_job(task.namespace, job_name(task.name, "rollback")), task.uid
    )
    try:
        record = op.records.read(task.uid)
    except (psycopg2.Error, DatabaseUnavailable) as exc:
        raise kopf.TemporaryError(f"runner database unreachable: {exc}", delay=10) from exc
    observed = Observed(
        run_job=run,
        rollback_job=rollback,
        runner_pods=observe.live_pods(kube.task_pods(task.namespace, task.uid)),
        record=record,
    )
    if status is None or status.started_at is not None or run is not None:
        return observed
    tasks, run_jobs = kube.tasks(task.namespace), kube.run_jobs(task.namespace)
    queue = observe.queue_for(task.spec.effective_concurrency_key(), tasks, run_jobs)
    holder = queue.holders[0].name if queue.holders else None
    limit = op.settings.max_running_per_organization
    return Observed(
        run_job=run,
        rollback_job=rollback,
        runner_pods=observed.runner_pods,
        record=record,
        admitted=task.name in queue.admitted,
        key_holder=holder,
        queue_position=queue.position(task.name),
        organization_running=observe.organization_running(
            task.spec.organization, tasks, run_jobs) if limit else 0,
        organization_limit=limit,
    )


def _carry_out(op: Operator, task: Task, body: Mapping[str, Any],
               actions: tuple[Action, ...]) -> None:
    """Post the Events among ``actions``, then act in order, then admit the next task of a
    freed key.

    Events first: an operator killed during the actions (which its successor repeats or
    finds done) must not lose them. ``reconcile`` posts a decision's Events itself, before
    the status, and passes the rest here.
    """
    kube, records = op.kube, op.records
    released: list[str] = []
    where = {"task": task.name, "namespace": task.namespace}
    events = [a for a in actions if isinstance(a, PostEvent)]
    for action in (*events, *(a for a in actions if not isinstance(a, PostEvent))):
        match action:
            case HoldRun(hold=hold):
                records.hold(task, hold)
                log.info("run_held", extra={**where, "hold": hold})
            case ReleaseRun():
                records.hold(task, None)
            case PatchSpec() as change:
                # At the version decided on: a client's change since wins, and the next
                # reconcile decides again from it.
                version = str(body["metadata"].get("resourceVersion") or "")
                patched = kube.patch_task(task.namespace, task.name, change.body(), version)
                log.info("spec_patched" if patched else "spec_patch_skipped",
                         extra={**where, "spec": dict(change.spec), "why": change.reason})
            case SetRateLimit(rate_limit=rate_limit):
                # Not written (a chunk kept its lock): the next reconcile finds the record
                # still differs from the spec and writes it again.
                if records.set_rate_limit(task, rate_limit):
                    log.info("rate_limit_set", extra={**where, "rate_limit": rate_limit})
            case CreateRunJob(name=name, suspend=suspend):
                _create(kube, build_run_job(task, op.settings, suspend=suspend), task.uid)
                log.info("job_created", extra={**where, "job": name, "suspend": suspend})
            case CreateRollbackJob(name=name):
                _create(kube, build_rollback_job(task, op.settings), task.uid)
                log.info("job_created", extra={**where, "job": name, "suspend": False})
            case SuspendJob(name=name):
                kube.set_suspend(task.namespace, name, True)
                log.info("job_suspended", extra={**where, "job": name})
            case ResumeJob(name=name):
                kube.set_suspend(task.namespace, name, False)
                log.info("job_resumed", extra={**where, "job": name})
            case DeleteJob(name=name, propagation=propagation):
                kube.delete_job(task.namespace, name, propagation)
                log.info("job_deleted", extra={**where, "job": name, "propagation": propagation})
            case PostEvent(type=type_, reason=reason, message=message):
                kube.post_event(body, type_, reason, message)
            case ReleaseKey(key=key):
                released.append(key)
    for key in released:
        log.info("key_released", extra={**where, "key": key})
        _admit_next(op, task.namespace, key, task.spec.organization)


def _create(kube: Cluster, job: Mapping[str, Any], uid: str) -> None:
    try:
        kube.create_job(job, uid)
    except JobNameTaken as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from exc


def _admit_next(op: Operator, namespace: str, key: str, organization: str) -> None:
    """A key was freed, and a runner of ``organization``: reconcile the task that waits
    longest for the key, and, under a per-organization limit, the first of each other key
    of the organization's waiting tasks (any of them may now start)."""
    kube = op.kube
    tasks, run_jobs = kube.tasks(namespace), kube.run_jobs(namespace)
    keys = [key]
    if op.settings.max_running_per_organization:
        keys += sorted(observe.waiting_keys(organization, tasks) - {key})
    for each in keys:
        for name in observe.queue_for(each, tasks, run_jobs).admitted:
            reconcile(op, namespace, name)


def _is_final(body: Mapping[str, Any]) -> bool:
    phase = TaskStatus.from_body(body.get("status")).phase
    return phase is not None and phase.is_final
