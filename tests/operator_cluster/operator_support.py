"""Helpers for the operator's control-plane tests: the operator process, tasks, data, waits.

Everything here talks to the real servers: the local Kubernetes API (admin client or
``kubectl``), the operator as a child process, and the test's PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2.extensions
import psycopg2.extras
from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from longtask.runner.cli import execute
from longtask.runner.engine import StopToken, TaskDefinition

from devcluster.kube import KubeCluster, free_port
from devcluster.kube import wait_for as wait_until  # the one bounded wait
from devcluster.pytest_fixtures import raw
from longtask import filestore, taskrecord
from longtask.constants import (
    ANNOTATION_REASON,
    ANNOTATION_REQUESTED_BY,
    EXIT_DONE,
    GROUP,
    LABEL_MODE,
    LABEL_TASK_UID,
    PLURAL,
    VERSION,
)
from longtask.db import connect

Connection = psycopg2.extensions.connection

KUBECTL = "/usr/bin/kubectl"
KARNATAKA = "29-karnataka-constituency.csv"
CODE_FIELDS = {"Assembly Constituency Code", "Block Code", "District Code"}
ORG = "acme"


# --------------------------------------------------------------------------- the operator


@dataclass
class OperatorProcess:
    """The operator (``python -m longtask.operator``) as a child process watching one
    namespace, standalone (no peering), with its JSON log in ``log_path``."""

    cluster: KubeCluster
    namespace: str
    db_url: str
    log_path: Path
    progress_interval: float = 1.0
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    starts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        self.port = free_port()
        return {
            **os.environ,
            **self.cluster.env(),
            "LONGTASK_DATABASE_URL": self.db_url,
            # The runner image built from the checkout, which the real node has imported:
            # nothing is pulled.
            "LONGTASK_OPERATOR_RUNNER_IMAGE": self.cluster.runner_image,
            "LONGTASK_OPERATOR_IMAGE_PULL_POLICY": "Never",
            "LONGTASK_OPERATOR_WATCH_NAMESPACES": self.namespace,
            "LONGTASK_OPERATOR_STANDALONE": "true",
            "LONGTASK_OPERATOR_PROGRESS_INTERVAL_SECONDS": str(self.progress_interval),
            "LONGTASK_OPERATOR_LIVENESS_ENDPOINT": f"http://127.0.0.1:{self.port}/healthz",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until its liveness probe answers 200."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"--- start {self.starts}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "longtask.operator"], env=self.env(),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_until(self._ready, timeout=timeout, what="the operator's liveness probe",
                   on_timeout=self.tail)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the operator exited with {self.proc.returncode}:\n"
                                 f"{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz",
                                        timeout=2) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL the operator: no cleanup, no goodbye, as a node loss or OOM kill."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (kopf stops its handlers), SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 60) -> str:
        """The last lines of the operator's log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no operator log)"
        return "operator log ends with:\n" + "\n".join(text[-lines:])

    def log_entries(self) -> list[dict[str, Any]]:
        """Every JSON line of the operator's log, in order."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    found.append(entry)
        return found

    def log_events(self, name: str) -> list[dict[str, Any]]:
        """The operator's JSON log lines whose event is ``name`` (e.g. ``job_created``)."""
        return [e for e in self.log_entries() if e.get("event") == name]

    def health(self) -> dict[str, Any] | None:
        """The liveness probe's JSON body while it answers 200, else None. An elected
        process says ``{"identity": ..., "leader": true|false, ...}``."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz",
                                        timeout=2) as resp:
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except (urllib.error.URLError, OSError, ValueError):
            return None


class JobRecorder(threading.Thread):
    """Every Job of the namespace that ever existed, from a watch: ``{uid: (mode, name)}``.

    A Job made and deleted between two polls would be missed by polling; a watch from the
    list's ``resourceVersion`` sees each one.
    """

    def __init__(self, batch: Any, namespace: str) -> None:
        super().__init__(daemon=True, name="job-recorder")
        self.batch = batch
        self.namespace = namespace
        self.seen: dict[str, tuple[str, str]] = {}
        self.errors: list[str] = []
        self._halt = threading.Event()
        self._ready = threading.Event()

    def _note(self, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        mode = (meta.get("labels") or {}).get(LABEL_MODE, "?")
        self.seen.setdefault(meta["uid"], (mode, meta["name"]))

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                listed = self.batch.list_namespaced_job(self.namespace,
                                                        label_selector=LABEL_TASK_UID)
                for job in listed.items:
                    self._note(self.batch.api_client.sanitize_for_serialization(job))
                version = listed.metadata.resource_version
                self._ready.set()
                while not self._halt.is_set():
                    watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
                    stream = watcher.stream(
                        self.batch.list_namespaced_job, self.namespace,
                        label_selector=LABEL_TASK_UID, resource_version=version,
                        timeout_seconds=2, allow_watch_bookmarks=True)
                    for event in stream:
                        job = event["raw_object"]
                        version = job["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self._note(job)
            except ApiException as exc:  # 410 Gone: list again from a fresh version
                if exc.status != 410:
                    self.errors.append(str(exc))
                    time.sleep(0.5)

    def start_and_wait(self) -> None:
        """Start watching; returns once the first listing is in (20 s at most)."""
        self.start()
        if not self._ready.wait(20):
            raise AssertionError(f"the Job watch did not start: {self.errors}")

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def modes(self) -> dict[str, list[str]]:
        """``{mode: [Job name per distinct uid]}``."""
        found: dict[str, list[str]] = {}
        for mode, name in list(self.seen.values()):
            found.setdefault(mode, []).append(name)
        return found


# --------------------------------------------------------------------------- the database


def create_org(db: Connection, slug: str = ORG) -> int:
    """Insert organization ``slug``; its id."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO collect.organizations (slug, name) VALUES (%s, %s) "
                    "RETURNING id", (slug, slug.title()))
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def create_village_form(db: Connection, org_id: int, name: str, header: list[str]) -> int:
    """A form whose fields are the Karnataka file's columns, a few codes typed integer."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO collect.forms (organization_id, name) VALUES (%s, %s) "
                    "RETURNING id", (org_id, name))
        row = cur.fetchone()
        assert row is not None
        form_id = int(row[0])
        fields = [n for n in header if n != "Village Code"]
        for position, fname in enumerate(fields):
            cur.execute(
                "INSERT INTO collect.form_fields (form_id, position, name, type, required) "
                "VALUES (%s, %s, %s, %s, %s)",
                (form_id, position, fname, "integer" if fname in CODE_FIELDS else "text",
                 fname == "Village Name"))
    return form_id


def store_file(db_url: str, data: bytes, filename: str, organization: str = ORG) -> uuid.UUID:
    """Put ``data`` in the file store; the file's id."""
    conn = connect(db_url)
    try:
        return filestore.store(conn, io.BytesIO(data), organization=organization,
                               filename=filename).id
    finally:
        conn.close()


def upload_directly(db_url: str, file_id: uuid.UUID, form: str) -> None:
    """The same upload run by the runner's code in this process, with no Kubernetes and no
    interruption: the reference an operated run must equal."""
    definition = TaskDefinition(
        uid=uuid.uuid4(), type="BaselineUpload", organization=ORG,
        params={"form": form, "fileId": str(file_id), "keyColumn": "Village Code"},
        name="reference", namespace="none")
    code = execute(definition, "run", db_url, StopToken())
    assert code == EXIT_DONE, f"the reference upload exited with {code}"


def rows_of_task(db: Connection, uid: str) -> int:
    """Baseline records written by task ``uid`` that are still there."""
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.baseline_records WHERE task_uid = %s",
                    (uid,))
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def form_checksum(db: Connection, form: str) -> tuple[int, str]:
    """(rows, md5 of external id and data in id order) of one form's baseline records."""
    with db.cursor() as cur:
        cur.execute(
            "SELECT count(*), coalesce(md5(string_agg(b.external_id || b.data::text, '|' "
            "ORDER BY b.external_id)), '') FROM collect.baseline_records b "
            "JOIN collect.forms f ON f.id = b.form_id WHERE f.name = %s", (form,))
        row = cur.fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def record(db: Connection, uid: str) -> dict[str, Any] | None:
    """The runner's row in ``longtask.tasks``, or None before the runner wrote it."""
    with db.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT * FROM longtask.tasks WHERE uid = %s", (uid,))
        row = cur.fetchone()
    return None if row is None else dict(row)


def chunks(db: Connection, uid: str, mode: str = "run") -> list[dict[str, Any]]:
    """The task's committed chunks of one mode, by sequence."""
    with db.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT seq, epoch, rows, commit_requested_at FROM longtask.chunks "
                    "WHERE task_uid = %s AND mode = %s ORDER BY seq", (uid, mode))
        return [dict(r) for r in cur.fetchall()]


# --------------------------------------------------------------------------- LongTasks


class Tasks:
    """LongTasks of one namespace through the admin client (and ``kubectl``)."""

    def __init__(self, cluster: KubeCluster, custom: Any, core: Any, batch: Any,
                 namespace: str) -> None:
        self.cluster = cluster
        self.custom = custom
        self.core = core
        self.batch = batch
        self.namespace = namespace

    def create(self, name: str, spec: Mapping[str, Any],
               annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Create a LongTask; the object as stored (its uid in ``metadata.uid``)."""
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LongTask",
                "metadata": {"name": name, "annotations": dict(annotations or {})},
                "spec": dict(spec)}
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body)
        return created

    def get(self, name: str) -> dict[str, Any]:
        """The LongTask as the server has it now."""
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name)
        return body

    def phase(self, name: str) -> str | None:
        """``status.phase``, None before the operator wrote one."""
        phase: str | None = (self.get(name).get("status") or {}).get("phase")
        return phase

    def set_state(self, name: str, state: str, *, requested_by: str | None = None,
                  reason: str | None = None) -> None:
        """Change ``spec.state`` (and the who/why annotations) in one merge patch."""
        patch: dict[str, Any] = {"spec": {"state": state}}
        annotations = {k: v for k, v in ((ANNOTATION_REQUESTED_BY, requested_by),
                                         (ANNOTATION_REASON, reason)) if v is not None}
        if annotations:
            patch["metadata"] = {"annotations": annotations}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, patch)

    def kubectl(self, *args: str) -> str:
        """Run kubectl in the namespace; its stdout (``AssertionError`` on failure)."""
        result = subprocess.run([KUBECTL, "-n", self.namespace, *args],
                                env={**os.environ, **self.cluster.env()},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def wait_phase(self, name: str, *phases: str, timeout: float,
                   operator: OperatorProcess | None = None) -> dict[str, Any]:
        """Wait until the task is in one of ``phases``; the object then."""
        def check() -> dict[str, Any] | None:
            body = self.get(name)
            return body if (body.get("status") or {}).get("phase") in phases else None

        def explain() -> str:
            status = self.get(name).get("status") or {}
            seen = f"phase {status.get('phase')}: {status.get('message')}"
            return seen + ("\n" + operator.tail() if operator else "")

        return wait_until(check, timeout=timeout, what=f"{name} to be {'|'.join(phases)}",
                          on_timeout=explain)

    def watch_phases(self, name: str, until: set[str], timeout: float,
                     operator: OperatorProcess | None = None) -> list[str]:
        """Poll the task's phase every 50 ms until it is in ``until``; the distinct phases
        seen in order (``Pending`` while the operator has written no status)."""
        seen: list[str] = []

        def check() -> bool:
            phase = self.phase(name) or "Pending"
            if not seen or seen[-1] != phase:
                seen.append(phase)
            return phase in until

        wait_until(check, timeout=timeout, interval=0.05, what=f"{name} to reach {until}",
                   on_timeout=lambda: f"phases seen: {seen}\n"
                   + (operator.tail() if operator else ""))
        return seen

    def jobs(self, uid: str, mode: str | None = None) -> list[dict[str, Any]]:
        """The task's Jobs (of one mode, or both), as JSON."""
        selector = f"{LABEL_TASK_UID}={uid}" + (f",{LABEL_MODE}={mode}" if mode else "")
        listed = raw(self.batch.list_namespaced_job(self.namespace, label_selector=selector,
                                                     _preload_content=False))
        return list(listed.get("items") or [])

    def pods(self, uid: str, mode: str | None = None) -> list[dict[str, Any]]:
        """The task's pods that still exist (terminating ones included), as JSON."""
        selector = f"{LABEL_TASK_UID}={uid}" + (f",{LABEL_MODE}={mode}" if mode else "")
        listed = raw(self.core.list_namespaced_pod(self.namespace, label_selector=selector,
                                                   _preload_content=False))
        return list(listed.get("items") or [])

    def wait_job_complete(self, uid: str, mode: str = "run") -> dict[str, Any]:
        """Wait (20 s) until the task's Job of ``mode`` has its pod succeeded; the Job then.

        A phase that ends comes from the runner's record, a moment before its pod exits.
        """
        def complete() -> dict[str, Any] | None:
            jobs = self.jobs(uid, mode)
            return jobs[0] if jobs and jobs[0]["status"].get("succeeded") == 1 else None

        return wait_until(complete, timeout=20, what=f"the {mode} Job of {uid} to complete")

    def runner_pid(self, uid: str, mode: str = "run") -> int:
        """The host process id of the task's running runner (from its container's
        ``containerID``: containerd's task, or the process kubelet's ``process://<pid>``);
        waits up to 30 s for one."""
        def pid() -> int | None:
            for pod in self.pods(uid, mode):
                for c in (pod.get("status") or {}).get("containerStatuses") or []:
                    if "running" in (c.get("state") or {}) and c.get("containerID"):
                        with contextlib.suppress(LookupError):
                            return self.cluster.container_pid(c["containerID"])
            return None

        return wait_until(pid, timeout=30, what=f"a running {mode} pod of {uid}")

    def events(self, name: str) -> list[dict[str, Any]]:
        """Events about the LongTask ``name``, oldest first."""
        listed = raw(self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name},"
            "involvedObject.kind=LongTask", _preload_content=False))
        items = list(listed.get("items") or [])
        return sorted(items, key=lambda e: (e.get("firstTimestamp") or "",
                                            e["metadata"].get("creationTimestamp") or "",
                                            e["metadata"]["resourceVersion"].zfill(20)))

    def release_all(self) -> None:
        """Strip the finalizer from every LongTask left, so the namespace can go without an
        operator (the test's operator is stopped by then)."""
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                           PLURAL)
        for item in listed.get("items") or []:
            with contextlib.suppress(ApiException):
                self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, item["metadata"]["name"],
                    {"metadata": {"finalizers": None}})


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """Hold a process stopped (SIGSTOP) for the block, as a runner stuck in a long
    statement: a SIGTERM sent meanwhile is handled only once it continues (SIGCONT). The
    runner starts no child process: the signal goes to it alone."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def baseline_spec(file_id: uuid.UUID, form: str, *, rate_limit: int | None = None,
                  on_terminate: str | None = None, organization: str = ORG,
                  state: str | None = None) -> dict[str, Any]:
    """A BaselineUpload spec for the Karnataka village file keyed by ``Village Code``."""
    spec: dict[str, Any] = {"type": "BaselineUpload", "organization": organization,
                            "params": {"form": form, "fileId": str(file_id),
                                       "keyColumn": "Village Code"}}
    if rate_limit is not None:
        spec["rateLimit"] = rate_limit
    if on_terminate is not None:
        spec["onTerminate"] = on_terminate
    if state is not None:
        spec["state"] = state
    return spec


def start_slow(tasks: Tasks, operator: OperatorProcess, db: Connection, name: str,
               file_id: uuid.UUID, *, rows: int = 1000, rate: int = 1000, **spec: Any) -> str:
    """Create an upload into form ``name`` limited to ``rate`` rows/s (at 1000, about 15 s
    for the whole file) and wait until ``rows`` rows are committed; the task's uid."""
    uid: str = tasks.create(name, baseline_spec(file_id, name, rate_limit=rate, **spec))[
        "metadata"]["uid"]
    wait_until(lambda: (record(db, uid) or {}).get("done", 0) >= rows, timeout=60,
               what=f"{name} to commit {rows} rows", on_timeout=operator.tail)
    return uid


def record_success(db_url: str, task: Mapping[str, Any], done: int) -> None:
    """Write a runner's success for ``task`` (a LongTask object) as the runner does, through
    :mod:`longtask.taskrecord`: register, take the lease, commit a last chunk that ends the
    run ``succeeded`` with ``done`` rows. No row of the form is written."""
    record = taskrecord.TaskRecord.from_body(task)
    conn = connect(db_url, application_name="longtask-tests")
    try:
        taskrecord.register(conn, record)
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            lease = taskrecord.acquire(cur, record.uid, "run", "test-runner")
            assert lease is not None, "the record gave no lease"
        with conn.cursor() as cur:
            lock = taskrecord.lock_for_chunk(cur, record.uid, "run")
            taskrecord.checkpoint(
                cur, record.uid, "run", epoch=lease["epoch"], cursor={"line": done + 1},
                done=done, row_errors=0, rate=None, eta=None, rows=done, chunk_errors=0,
                chunk_started_at=lock.started_at, finished=True, end_status="succeeded")
        conn.commit()
    finally:
        conn.close()
