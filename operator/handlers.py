"""The kopf handlers: each finds its task, calls :func:`.decide.decide`, acts through :mod:`.kube`.

Run with ``python -m longtask.operator`` (see ``__main__``). A LongTask is reconciled when
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
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import kopf
import psycopg2
from kubernetes import client, config
from longtask.operator import observe
from longtask.operator.decide import (
    Action,
    CreateRollbackJob,
    CreateRunJob,
    DeleteJob,
    Observed,
    PostEvent,
    ReleaseKey,
    ResumeJob,
    SuspendJob,
    decide,
    decide_deletion,
)
from longtask.operator.kube import JobNameTaken, Kube
from longtask.operator.manifests import build_rollback_job, build_run_job
from longtask.operator.names import event_name, job_name
from longtask.operator.records import Records
from longtask.operator.settings import OperatorSettings

from longtask.constants import FINALIZER, GROUP, LABEL_TASK_UID, PLURAL, VERSION
from longtask.model import Task, TaskStatus, status_patch
from longtask.phases import DesiredState
from longtask.settings import DatabaseSettings

log = logging.getLogger("longtask.operator")
SETTINGS = OperatorSettings()  # type: ignore[call-arg]  # from LONGTASK_OPERATOR_* env
# Seconds before kopf calls a handler again after it raised something unexpected (kopf's own
# default is 60 s: far too long for a pause a person is waiting for).
RETRY_SECONDS = 5.0
_KEY_LOCKS: defaultdict[tuple[str, str], threading.RLock] = defaultdict(threading.RLock)
_KEY_LOCKS_GUARD = threading.Lock()
_STATE: dict[str, Any] = {}
HANDLER_THREADS = 8  # kopf's sync handlers run in a pool of this size


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Every kopf setting the operator relies on, each with its reason; then log in."""
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
    _STATE["kube"] = Kube(api)
    # One database connection for each of kopf's handler threads, so none waits on the pool.
    settings.execution.max_workers = HANDLER_THREADS
    _STATE["records"] = Records(DatabaseSettings().database_url,  # type: ignore[call-arg]
                                max_connections=HANDLER_THREADS)
    log.info(
        "operator_started",
        extra={"namespaces": list(SETTINGS.namespaces) or "*", "standalone": SETTINGS.standalone},
    )


@kopf.on.cleanup()
def close(**_: Any) -> None:
    """Close the database pool on shutdown."""
    records: Records | None = _STATE.get("records")
    if records is not None:
        records.close()


@kopf.on.probe(id="apiServer")
def api_server_version(**_: Any) -> str:
    """Liveness: the API server answers with its version (raises when it does not)."""
    return _kube().server_version()


@kopf.on.resume(GROUP, VERSION, PLURAL, id="resumed", backoff=RETRY_SECONDS)
@kopf.on.create(GROUP, VERSION, PLURAL, id="created", backoff=RETRY_SECONDS)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", id="spec_changed", backoff=RETRY_SECONDS)
def on_change(namespace: str | None, name: str, **_: Any) -> None:
    """A LongTask appeared, the operator started, or its spec changed: reconcile it now."""
    reconcile(_namespaced(namespace), name)


@kopf.timer(
    GROUP, VERSION, PLURAL, interval=SETTINGS.progress_interval_seconds, backoff=RETRY_SECONDS
)
def on_timer(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    """Every few seconds: progress from the runner's record, pods gone, keys freed."""
    if not _is_final(body) and not body.metadata.get("deletionTimestamp"):
        reconcile(_namespaced(namespace), name)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_TASK_UID: kopf.PRESENT})
def on_job_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    """A task's Job changed (pod gone, complete, failed, deleted): reconcile its task now.

    Without this, a pause or a terminate would wait for the timer to see the pod gone.
    """
    owner = observe.owner_name(body)
    if owner is not None:
        reconcile(_namespaced(namespace), owner)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="cleanup", backoff=RETRY_SECONDS)
def on_delete(body: kopf.Body, **_: Any) -> None:
    """Stop the task's runners; keep the finalizer until no pod and no Job is left."""
    fresh = dict(body)
    task = Task.from_body(fresh)
    cleanup = decide_deletion(task, TaskStatus.from_body(fresh.get("status")), _observe(task))
    _carry_out(task, fresh, cleanup.actions)
    if not cleanup.done:
        raise kopf.TemporaryError("waiting for the task's runner pods and Jobs to go", delay=2)
    log.info("task_released", extra={"task": task.name, "namespace": task.namespace})


def reconcile(namespace: str, name: str) -> None:
    """Decide and act for one LongTask, under its concurrency key's lock.

    The task is read fresh from the API server inside the lock, so two reconciles of one
    key (a timer, a Job event, a freed key) never decide from the same stale status.
    Raises ``kopf.TemporaryError`` when the runner's database cannot be read.
    """
    body = _kube().task(namespace, name)
    if body is None:
        return
    key = observe.concurrency_key(body) or body["metadata"]["uid"]
    with _key_lock(namespace, key):
        fresh = _kube().task(namespace, name)
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return
        task = Task.from_body(fresh)
        status = TaskStatus.from_body(fresh.get("status"))
        decision = decide(task, status, _observe(task, status), dt.datetime.now(dt.UTC))
        # Events before the status: an operator killed between the two posts them again,
        # under the same names (refused as already there), instead of finding the status
        # moved and the transition's Event never posted.
        for event in (a for a in decision.actions if isinstance(a, PostEvent)):
            _kube().post_event(
                fresh,
                event.type,
                event.reason,
                event.message,
                name=event_name(
                    task.name, task.uid, task.generation, status.phase, status.phase_since,
                    event.reason,
                ),
            )
        patch = status_patch(status, decision.status)
        if patch:
            _kube().patch_status(task.namespace, task.name, patch)
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
            task, fresh, tuple(a for a in decision.actions if not isinstance(a, PostEvent))
        )


def _namespaced(namespace: str | None) -> str:
    """LongTasks and Jobs are namespaced: kopf always names the namespace."""
    if namespace is None:
        raise kopf.PermanentError("a LongTask or Job without a namespace")
    return namespace


def _key_lock(namespace: str, key: str) -> threading.RLock:
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS[(namespace, key)]


def _observe(task: Task, status: TaskStatus | None = None) -> Observed:
    kube = _kube()
    run = observe.own_job(kube.get_job(task.namespace, job_name(task.name, "run")), task.uid)
    rollback = observe.own_job(
        kube.get_job(task.namespace, job_name(task.name, "rollback")), task.uid
    )
    try:
        record = _records().read(task.uid)
    except psycopg2.Error as exc:
        raise kopf.TemporaryError(f"runner database unreachable: {exc}", delay=10) from exc
    observed = Observed(
        run_job=run,
        rollback_job=rollback,
        runner_pods=observe.live_pods(kube.task_pods(task.namespace, task.uid)),
        record=record,
    )
    if status is None or status.started_at is not None or run is not None:
        return observed
    queue = observe.queue_for(
        task.spec.effective_concurrency_key(),
        kube.tasks(task.namespace),
        kube.run_jobs(task.namespace),
    )
    holder = queue.holders[0].name if queue.holders else None
    return Observed(
        run_job=run,
        rollback_job=rollback,
        runner_pods=observed.runner_pods,
        record=record,
        admitted=task.name in queue.admitted,
        key_holder=holder,
        queue_position=queue.position(task.name),
    )


def _carry_out(task: Task, body: Mapping[str, Any], actions: tuple[Action, ...]) -> None:
    """Post the Events among ``actions``, then act in order, then admit the next task of a
    freed key.

    Events first: an operator killed during the actions (which its successor repeats or
    finds done) must not lose them. ``reconcile`` posts a decision's Events itself, before
    the status, and passes the rest here.
    """
    kube = _kube()
    released: list[str] = []
    where = {"task": task.name, "namespace": task.namespace}
    events = [a for a in actions if isinstance(a, PostEvent)]
    for action in (*events, *(a for a in actions if not isinstance(a, PostEvent))):
        match action:
            case CreateRunJob(name=name, suspend=suspend):
                if not suspend:
                    _records().hold(task, None)
                _create(kube, build_run_job(task, SETTINGS, suspend=suspend), task.uid)
                log.info("job_created", extra={**where, "job": name, "suspend": suspend})
            case CreateRollbackJob(name=name):
                _create(kube, build_rollback_job(task, SETTINGS), task.uid)
                log.info("job_created", extra={**where, "job": name, "suspend": False})
            case SuspendJob(name=name):
                if task.spec.state != DesiredState.RUNNING:
                    _records().hold(task, str(task.spec.state))
                kube.set_suspend(task.namespace, name, True)
                log.info("job_suspended", extra={**where, "job": name})
            case ResumeJob(name=name):
                _records().hold(task, None)
                kube.set_suspend(task.namespace, name, False)
                log.info("job_resumed", extra={**where, "job": name})
            case DeleteJob(name=name, propagation=propagation):
                if task.spec.state == DesiredState.TERMINATED:
                    _records().hold(task, str(DesiredState.TERMINATED))
                kube.delete_job(task.namespace, name, propagation)
                log.info("job_deleted", extra={**where, "job": name, "propagation": propagation})
            case PostEvent(type=type_, reason=reason, message=message):
                kube.post_event(body, type_, reason, message)
            case ReleaseKey(key=key):
                released.append(key)
    for key in released:
        log.info("key_released", extra={**where, "key": key})
        _admit_next(task.namespace, key)


def _create(kube: Kube, job: Mapping[str, Any], uid: str) -> None:
    try:
        kube.create_job(job, uid)
    except JobNameTaken as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from exc


def _admit_next(namespace: str, key: str) -> None:
    """A key was freed: reconcile the task that waits longest for it (it may now start)."""
    kube = _kube()
    tasks = kube.tasks(namespace)
    queue = observe.queue_for(key, tasks, kube.run_jobs(namespace))
    for name in queue.admitted:
        reconcile(namespace, name)


def _is_final(body: Mapping[str, Any]) -> bool:
    phase = TaskStatus.from_body(body.get("status")).phase
    return phase is not None and phase.is_final


def _kube() -> Kube:
    kube: Kube = _STATE["kube"]
    return kube


def _records() -> Records:
    records: Records = _STATE["records"]
    return records
