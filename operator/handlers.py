"""The kopf handlers: each parses, calls :func:`.decide.decide`, and hands actions to :mod:`.kube`.

Run with ``kopf run -m longtask.operator.handlers`` (``--all-namespaces`` or
``--namespace``). Not exercised yet: the control-plane tests of issue 3 will start it
against the local cluster. All decisions of one concurrency key are serialized by a lock,
and a decision's status is written before its actions, so the key's holder is visible
before its Job exists.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, cast

import kopf
import psycopg2
from kubernetes import config
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
from longtask.operator.model import Task, TaskStatus, status_patch
from longtask.operator.names import job_name
from longtask.operator.records import Records
from longtask.operator.settings import OperatorSettings

from longtask.constants import FINALIZER, GROUP, PLURAL, VERSION
from longtask.settings import DatabaseSettings

log = logging.getLogger("longtask.operator")
SETTINGS = OperatorSettings()  # type: ignore[call-arg]  # from LONGTASK_OPERATOR_* env
_KEY_LOCKS: defaultdict[tuple[str, str], threading.RLock] = defaultdict(threading.RLock)
_STATE: dict[str, Any] = {}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Every kopf setting the operator relies on, each with its reason."""
    # Our own finalizer and annotation prefix: the resource carries no kopf.zalando.org keys.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # Long idle periods: the server ends a watch after server_timeout and kopf opens a new
    # one; the client timeout is a little longer so a silent, dead connection is noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # One active replica: the others wait (peering objects come with the chart).
    settings.peering.name = "longtask"
    settings.peering.mandatory = True
    settings.peering.clusterwide = not SETTINGS.namespaces
    # Events for transitions come from decide(); kopf's own go only for errors.
    settings.posting.level = logging.WARNING
    config.load_config()  # type: ignore[no-untyped-call]  # in-cluster, else KUBECONFIG
    from kubernetes import client

    _STATE["kube"] = Kube(client.ApiClient())
    _STATE["records"] = Records(DatabaseSettings().database_url)  # type: ignore[call-arg]


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


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_change(body: kopf.Body, **_: Any) -> None:
    """A LongTask appeared or its spec changed: reconcile it now."""
    reconcile(dict(body))


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.progress_interval_seconds)
def on_timer(body: kopf.Body, **_: Any) -> None:
    """Every few seconds: progress from the runner's record, pods gone, keys freed."""
    if not _is_final(body):
        reconcile(dict(body))


@kopf.on.delete(GROUP, VERSION, PLURAL)
def on_delete(body: kopf.Body, **_: Any) -> None:
    """Stop the task's runners; keep the finalizer until no pod and no Job is left."""
    task = Task.from_body(body)
    cleanup = decide_deletion(task, TaskStatus.from_body(body.get("status")), _observe(task))
    _carry_out(task, body, cleanup.actions)
    if not cleanup.done:
        raise kopf.TemporaryError("waiting for the task's runner pods and Jobs to go", delay=2)


def reconcile(body: Mapping[str, Any]) -> None:
    """Decide and act for one LongTask, under its concurrency key's lock."""
    key = observe.concurrency_key(body) or body["metadata"]["uid"]
    with _KEY_LOCKS[(body["metadata"]["namespace"], key)]:
        fresh = _kube().task(body["metadata"]["namespace"], body["metadata"]["name"])
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return
        task = Task.from_body(fresh)
        status = TaskStatus.from_body(fresh.get("status"))
        decision = decide(task, status, _observe(task, status), dt.datetime.now(dt.UTC))
        patch = status_patch(status, decision.status)
        if patch:
            _kube().patch_status(task.namespace, task.name, patch)
        _carry_out(task, fresh, decision.actions)


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
    kube = _kube()
    released: list[str] = []
    for action in actions:
        match action:
            case CreateRunJob(suspend=suspend):
                _create(kube, build_run_job(task, SETTINGS, suspend=suspend), task.uid)
            case CreateRollbackJob():
                _create(kube, build_rollback_job(task, SETTINGS), task.uid)
            case SuspendJob(name=name):
                kube.set_suspend(task.namespace, name, True)
            case ResumeJob(name=name):
                kube.set_suspend(task.namespace, name, False)
            case DeleteJob(name=name, propagation=propagation):
                kube.delete_job(task.namespace, name, propagation)
            case PostEvent(type=type_, reason=reason, message=message):
                kopf.event(_body(body), type=type_, reason=reason, message=message)
            case ReleaseKey(key=key):
                released.append(key)
    for key in released:
        _admit_next(task.namespace, key)


def _create(kube: Kube, job: Mapping[str, Any], uid: str) -> None:
    try:
        kube.create_job(job, uid)
    except JobNameTaken as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from exc


def _admit_next(namespace: str, key: str) -> None:
    """A key was freed: reconcile the task that waits longest for it (it may now start)."""
    kube = _kube()
    tasks = {t["metadata"]["name"]: t for t in kube.tasks(namespace)}
    queue = observe.queue_for(key, tasks.values(), kube.run_jobs(namespace))
    for name in queue.admitted:
        reconcile(tasks[name])


def _is_final(body: Mapping[str, Any]) -> bool:
    phase = TaskStatus.from_body(body.get("status")).phase
    return phase is not None and phase.is_final


def _body(body: Mapping[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, dict(body)))


def _kube() -> Kube:
    kube: Kube = _STATE["kube"]
    return kube


def _records() -> Records:
    records: Records = _STATE["records"]
    return records
