"""Operator benchmarks on the local control plane, with real runner pods and PostgreSQL.

    python bench/operator_bench.py [--changes 20] [--tasks 300] [--keys 60] [--failovers 5]
                                   [--throttles 10]

Starts a throwaway PostgreSQL cluster, the local Kubernetes control plane (``make kube``)
and the operator (``python -m longtask.operator``, its default settings), and prints:

1. Control latency, median and p95 over ``--changes`` changes of each kind: from a
   ``spec.state`` edit (Running -> Paused, Paused -> Running, -> Terminated) to the Job
   being patched (``spec.suspend`` flipped, or its deletion seen), to the runner pod being
   gone (pause, terminate) or running again (resume), and to the phase that ends the
   step. The floor, measured in the same run: the same Job suspended, resumed and deleted
   by hand, with no operator in between.
2. Scale: ``--tasks`` LongTasks created at once (tiny Exports; ``--keys`` concurrency keys,
   so all but one task per key wait in ``Queued``): the time until the operator has given
   each a status, until each has been admitted (``Running``), until each is final; the
   queue hand-off (a key's holder final -> the next one ``Running``); and the operator
   process's peak RSS (``VmHWM``) and CPU time. The runner's own time per task is the floor
   of each key's chain.
3. Failover, ``--failovers`` times: two elected operators (leader election on a Lease, the
   default timing), the leader SIGKILLed while an Export runs and a pause asked for at
   once: the time from the SIGKILL until the other holds the Lease and until the task is
   ``Paused``. The floor is the lease duration (a standby waits that long after the last
   renewal it saw); the killed operator is started again as a standby each time.
4. Live throttle, ``--throttles`` times: ``spec.rateLimit`` of a running Export patched
   between 200 and 1000 rows/s: the time from the PATCH until the task record holds the new
   limit and until the first chunk that read it committed, and the rate held over the next
   3 s (rows of the chunks committed then, against the limit; target within 10 %). The
   floor, in the same run: a bare Job's runner whose record is set by hand, with no
   operator in between.

Each runner pod is a local process with two database connections (a tiny export opens no
copier; PostgreSQL here allows 200), so ``--keys`` bounds how many run at once. Figures
come from watches in this process, so they include the watch delivery; machines here are
shared and noisy: compare an operator figure with its floor, not across runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2.extensions
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from longtask.operator.manifests import build_run_job
from longtask.operator.settings import OperatorSettings

from devcluster import kube, postgres, seed
from longtask.constants import GROUP, PLURAL, VERSION
from longtask.db import connect
from longtask.db.migrate import upgrade
from longtask.model import Task

ORG = "bench"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
FINAL = frozenset({"Succeeded", "Failed", "RolledBack", "Terminated"})
WAIT = 120.0  # seconds: the longest any one step may take before the run is abandoned
# Rows per second of the long Exports of part 1: a runner works for the whole part and is
# never close to done (the form holds many more submissions than it can reach).
SLOW_RATE = 200
SLOW_ROWS = 200_000


# Part 4: the limits a running Export is throttled between, and how long each is held.
THROTTLE_RATES = (SLOW_RATE, 1000)
HELD_SECONDS = 3.0
HELD_TOLERANCE = 0.10


# --------------------------------------------------------------------------- watching


@dataclass(frozen=True)
class Seen:
    """One watch event as received: ``at`` is ``time.monotonic()`` seconds."""

    at: float
    kind: str  # Job | Pod | LongTask
    type: str  # ADDED | MODIFIED | DELETED
    namespace: str
    name: str
    job: str | None = None  # a pod's Job
    suspend: bool | None = None  # a Job's spec.suspend
    deleting: bool = False  # deletionTimestamp set
    phase: str | None = None  # a pod's status.phase, a LongTask's status.phase


def summary(kind: str, type_: str, obj: Mapping[str, Any], at: float) -> Seen:
    """The few fields of a watched object the figures need."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return Seen(
        at=at, kind=kind, type=type_, namespace=meta.get("namespace", ""),
        name=meta.get("name", ""), job=(meta.get("labels") or {}).get(JOB_NAME_LABEL),
        suspend=spec.get("suspend") if kind == "Job" else None,
        deleting=meta.get("deletionTimestamp") is not None,
        phase=status.get("phase"))


class Timeline:
    """Every event of the watched kinds, in arrival order, and the latest per object."""

    def __init__(self) -> None:
        self.items: list[Seen] = []
        self.latest: dict[tuple[str, str, str], Seen] = {}
        self.cond = threading.Condition()

    def add(self, seen: Seen) -> None:
        with self.cond:
            self.items.append(seen)
            key = (seen.kind, seen.namespace, seen.name)
            if seen.type == "DELETED":
                self.latest.pop(key, None)
            else:
                self.latest[key] = seen
            self.cond.notify_all()

    def mark(self) -> int:
        """A position: :meth:`wait` looks only at events after it."""
        with self.cond:
            return len(self.items)

    def wait(self, since: int, match: Callable[[Seen], bool], what: str,
             timeout: float = WAIT) -> Seen:
        """The first event after ``since`` that ``match`` accepts; waits for it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            pos = since
            while True:
                for seen in self.items[pos:]:
                    if match(seen):
                        return seen
                pos = len(self.items)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"waited {timeout:.0f} s for {what}")
                self.cond.wait(min(left, 1.0))

    def until(self, check: Callable[[], bool], what: str, timeout: float = WAIT) -> float:
        """Wait until ``check()`` (called under the lock) holds; the time it first did."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"waited {timeout:.0f} s for {what}")
                self.cond.wait(min(left, 1.0))
            return self.items[-1].at if self.items else time.monotonic()

    def pods_of(self, namespace: str, job: str) -> list[str]:
        """Names of the pods of ``job`` that exist now and have not ended."""
        with self.cond:
            return [s.name for (kind, ns, _), s in self.latest.items()
                    if kind == "Pod" and ns == namespace and s.job == job
                    and s.phase not in ("Succeeded", "Failed")]


def watch_forever(timeline: Timeline, kind: str, list_fn: Callable[..., Any],
                  *args: Any) -> None:
    """Feed ``timeline`` from a watch of ``list_fn`` (all namespaces); list again on 410."""
    while True:
        version = None
        try:
            body = json.loads(list_fn(*args, _preload_content=False).data)
            now = time.monotonic()
            for obj in body.get("items") or []:
                obj.setdefault("metadata", {})
                timeline.add(summary(kind, "ADDED", obj, now))
            version = body["metadata"]["resourceVersion"]
            while True:
                watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
                for event in watcher.stream(list_fn, *args, resource_version=version,
                                            timeout_seconds=300, allow_watch_bookmarks=True):
                    obj = event["raw_object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        timeline.add(summary(kind, event["type"], obj, time.monotonic()))
        except ApiException as exc:
            if exc.status != 410:
                time.sleep(0.5)
        except Exception:  # noqa: BLE001  # a dropped connection: watch again
            time.sleep(0.5)


def start_watches(api: Any, timeline: Timeline) -> None:
    """Jobs, pods and LongTasks of every namespace, each in a daemon thread."""
    batch = client.BatchV1Api(api)
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    for kind, fn, args in (
        ("Job", batch.list_job_for_all_namespaces, ()),
        ("Pod", core.list_pod_for_all_namespaces, ()),
        ("LongTask", custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)),
    ):
        threading.Thread(target=watch_forever, args=(timeline, kind, fn, *args),
                         daemon=True, name=f"watch-{kind}").start()


# --------------------------------------------------------------------------- the stack


@dataclass
class Operator:
    """``python -m longtask.operator`` watching some namespaces, as a child process."""

    cluster: kube.KubeCluster
    db_url: str
    namespaces: str
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self) -> None:
        """Start it and wait until its liveness probe answers."""
        self.port = port = kube.free_port()
        env = {**os.environ, **self.cluster.env(), "LONGTASK_DATABASE_URL": self.db_url,
               "LONGTASK_OPERATOR_RUNNER_IMAGE": self.cluster.runner_image,
               "LONGTASK_OPERATOR_IMAGE_PULL_POLICY": "Never",
               "LONGTASK_OPERATOR_WATCH_NAMESPACES": self.namespaces,
               "LONGTASK_OPERATOR_STANDALONE": "true",
               "LONGTASK_OPERATOR_LIVENESS_ENDPOINT": f"http://127.0.0.1:{port}/healthz",
               # One organization's tasks under many keys: the keys' queues are measured.
               "LONGTASK_OPERATOR_MAX_RUNNING_PER_ORGANIZATION": "0",
               "PYTHONUNBUFFERED": "1", **self.extra_env}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "longtask.operator"], env=env,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the operator exited: {self.log.read_text()[-2000:]}")
            with (suppress(urllib.error.URLError, OSError),
                  urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"the operator never answered: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def leads(self) -> bool:
        """Whether its probe says it holds the Lease (an elected operator)."""
        with (suppress(urllib.error.URLError, OSError, ValueError),
              urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r):
            return bool(json.loads(r.read()).get("leader"))
        return False

    def kill(self) -> None:
        """SIGKILL, as a node loss or an OOM kill."""
        assert self.proc is not None
        os.killpg(self.proc.pid, 9)
        self.proc.wait(timeout=10)

    def usage(self) -> tuple[float, float, float]:
        """(peak RSS MB (VmHWM), current RSS MB (VmRSS), CPU seconds user+system)."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        kb = {line.split(":")[0]: int(line.split()[1]) for line in status
              if line.startswith(("VmHWM", "VmRSS"))}
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        return kb["VmHWM"] / 1024, kb["VmRSS"] / 1024, ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=5)


@dataclass
class Bench:
    """The servers and clients of one run."""

    workdir: Path
    db_url: str
    db: psycopg2.extensions.connection
    cluster: kube.KubeCluster
    api: Any
    timeline: Timeline
    operators: list[Operator] = field(default_factory=list)

    @property
    def custom(self) -> Any:
        return client.CustomObjectsApi(self.api)

    @property
    def batch(self) -> Any:
        return client.BatchV1Api(self.api)

    def namespace(self, name: str) -> None:
        """A namespace with the runner's database Secret and ServiceAccount."""
        core: Any = client.CoreV1Api(self.api)
        core.create_namespace({"metadata": {"name": name}})
        core.create_namespaced_secret(name, {"metadata": {"name": "longtask-database"},
                                             "stringData": {"url": self.db_url}})
        core.create_namespaced_service_account(name, {
            "metadata": {"name": "longtask-runner"}, "automountServiceAccountToken": False})

    def operator(self, namespaces: str, env: Mapping[str, str] | None = None) -> Operator:
        op = Operator(self.cluster, self.db_url, namespaces,
                      self.workdir / f"operator-{len(self.operators)}.log", dict(env or {}))
        self.operators.append(op)
        op.start()
        return op

    def create_task(self, namespace: str, name: str, spec: Mapping[str, Any]) -> str:
        """Create a LongTask; its uid."""
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LongTask",
                "metadata": {"name": name}, "spec": dict(spec)}
        created = self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                              PLURAL, body)
        return str(created["metadata"]["uid"])

    def set_state(self, namespace: str, name: str, state: str) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                   {"spec": {"state": state}})

    def done(self, uid: str) -> int:
        """Rows the task's runner has committed (0 before it has a record)."""
        with self.db.cursor() as cur:
            cur.execute("SELECT done FROM longtask.tasks WHERE uid = %s", (uid,))
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def wait_progress(self, uids: Sequence[str]) -> None:
        """Wait until each task's runner commits rows beyond what it had now."""
        before = {uid: self.done(uid) for uid in uids}
        deadline = time.monotonic() + WAIT
        while any(self.done(uid) <= rows for uid, rows in before.items()):
            if time.monotonic() > deadline:
                raise SystemExit("a runner made no progress")
            time.sleep(0.05)

    def stop(self) -> None:
        for op in self.operators:
            op.stop()


@contextmanager
def bench_stack() -> Iterator[Bench]:
    """PostgreSQL (migrated, organization ``bench``), Kubernetes with the CRDs, watches."""
    with tempfile.TemporaryDirectory(prefix="longtask-opbench-") as folder:
        workdir = Path(folder)
        pg = postgres.start()
        try:
            upgrade(pg.url)
            db = connect(pg.url)
            db.autocommit = True
            cluster = kube.start(workdir=workdir / "kube")
            try:
                api = cluster.api_client()
                kube.apply_crds(api)
                timeline = Timeline()
                start_watches(api, timeline)
                bench = Bench(workdir, pg.url, db, cluster, api, timeline)
                try:
                    yield bench
                finally:
                    bench.stop()
            finally:
                cluster.stop()
                db.close()
        finally:
            pg.stop()


def seed_forms(db: psycopg2.extensions.connection) -> None:
    """Organization ``bench`` with form ``slow`` (many submissions) and ``tiny`` (20)."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO collect.organizations (slug, name) VALUES (%s, 'Bench') "
                    "RETURNING id", (ORG,))
        row = cur.fetchone()
        assert row is not None
        org_id = int(row[0])
    for form, rows in (("slow", SLOW_ROWS), ("tiny", 20)):
        form_id = seed.submission_form(db, org_id, form)
        seed.submissions(db, org_id, form_id, rows, dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
                         dt.datetime(2015, 1, 2, tzinfo=dt.UTC))


def export_spec(form: str, key: str, rate: int | None = None) -> dict[str, Any]:
    """An Export of every submission of ``form`` (all made on 2015-01-01), its concurrency
    key ``Export/<organization>/<key>``."""
    spec: dict[str, Any] = {"type": "Export", "organization": ORG,
                            "concurrencyKey": f"Export/{ORG}/{key}",
                            "params": {"form": form, "from": "2015-01-01", "to": "2015-01-01"}}
    if rate is not None:
        spec["rateLimit"] = rate
    return spec


# --------------------------------------------------------------------------- 1. control


def bare_job(namespace: str, name: str, image: str) -> tuple[dict[str, Any], str]:
    """The operator's run Job for a slow Export, owned by nothing: the floor's Job; its
    task uid (the runner keeps its record under it)."""
    uid = str(uuid.uuid4())
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LongTask",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": 1,
                         "creationTimestamp": "2015-01-01T00:00:00Z"},
            "spec": export_spec("slow", f"ref-{name}", SLOW_RATE)}
    job = build_run_job(Task.from_body(body), OperatorSettings(
        runner_image=image, image_pull_policy="Never"))
    job["metadata"]["name"] = name
    del job["metadata"]["ownerReferences"]
    return job, uid


@dataclass
class Latency:
    """Seconds from a change to each observed step, one list per step."""

    steps: dict[str, list[float]] = field(default_factory=dict)

    def add(self, step: str, seconds: float) -> None:
        self.steps.setdefault(step, []).append(seconds)


def stats(values: Sequence[float]) -> str:
    """``median / p95`` in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{statistics.median(ms):6.0f} / {p95:6.0f}"


def measure_change(b: Bench, namespace: str, job: str, change: Callable[[], None],
                   job_patched: Callable[[Seen], bool], pod_step: str,
                   phase: tuple[str, str] | None, into: Latency) -> None:
    """Make ``change`` and time the Job's patch, the pod step and the task's phase."""
    t = b.timeline
    pods = t.pods_of(namespace, job)
    if pod_step == "gone" and not pods:
        raise SystemExit(f"{job} has no runner pod to stop")
    mark = t.mark()
    started = time.monotonic()
    change()
    seen = t.wait(mark, lambda s: s.kind == "Job" and s.namespace == namespace
                  and s.name == job and job_patched(s), f"{job} to be patched")
    into.add("job", seen.at - started)
    if pod_step == "gone":
        left = set(pods)
        last = started
        while left:
            gone = t.wait(mark, lambda s: s.kind == "Pod" and s.type == "DELETED"
                          and s.namespace == namespace and s.name in left,
                          f"the pods of {job} to go")
            left.discard(gone.name)
            last = max(last, gone.at)
        into.add("pod", last - started)
    else:
        running = t.wait(mark, lambda s: s.kind == "Pod" and s.namespace == namespace
                         and s.job == job and s.phase == "Running" and s.type != "DELETED",
                         f"a running pod of {job}")
        into.add("pod", running.at - started)
    if phase is not None:
        task, wanted = phase
        reached = t.wait(mark, lambda s: s.kind == "LongTask" and s.namespace == namespace
                         and s.name == task and s.phase == wanted, f"{task} to be {wanted}")
        into.add("phase", reached.at - started)


def control_latency(b: Bench, changes: int) -> dict[str, Latency]:
    """Part 1: pause, resume and terminate through the operator, and the same by hand."""
    ns, ref = "control", "control-ref"
    b.namespace(ns)
    b.namespace(ref)
    b.operator(ns)
    out = {k: Latency() for k in ("pause", "resume", "terminate", "suspend", "unsuspend",
                                  "delete")}

    def suspended(flag: bool) -> Callable[[Seen], bool]:
        return lambda s: s.suspend is flag

    def deleting(s: Seen) -> bool:
        return s.deleting or s.type == "DELETED"

    def patch_job(namespace: str, name: str, suspend: bool) -> Callable[[], None]:
        return lambda: b.batch.patch_namespaced_job(name, namespace,
                                                    {"spec": {"suspend": suspend}})

    # Pause and resume: one task and one bare Job, taking turns to go first.
    uid = b.create_task(ns, "cycle", export_spec("slow", "cycle", SLOW_RATE))
    job, ref_uid = bare_job(ref, "ref-cycle", b.cluster.runner_image)
    b.batch.create_namespaced_job(ref, job)
    b.wait_progress([uid, ref_uid])
    def pause() -> None:
        measure_change(b, ns, "lt-cycle-run", lambda: b.set_state(ns, "cycle", "Paused"),
                       suspended(True), "gone", ("cycle", "Paused"), out["pause"])

    def suspend() -> None:
        measure_change(b, ref, "ref-cycle", patch_job(ref, "ref-cycle", True),
                       suspended(True), "gone", None, out["suspend"])

    def resume() -> None:
        measure_change(b, ns, "lt-cycle-run", lambda: b.set_state(ns, "cycle", "Running"),
                       suspended(False), "running", ("cycle", "Running"), out["resume"])

    def unsuspend() -> None:
        measure_change(b, ref, "ref-cycle", patch_job(ref, "ref-cycle", False),
                       suspended(False), "running", None, out["unsuspend"])

    for i in range(changes):
        for first, second in ((pause, suspend), (resume, unsuspend)):
            if i % 2:
                first, second = second, first
            first()
            second()
        b.wait_progress([uid, ref_uid])  # both runners at work again before the next stop

    # Terminate: tasks and bare Jobs started in batches, then stopped one by one.
    batch_size = 5
    for start in range(0, changes, batch_size):
        names = [f"end-{i}" for i in range(start, min(changes, start + batch_size))]
        uids = [b.create_task(ns, n, export_spec("slow", n, SLOW_RATE)) for n in names]
        for n in names:
            job, ref_uid = bare_job(ref, f"ref-{n}", b.cluster.runner_image)
            b.batch.create_namespaced_job(ref, job)
            uids.append(ref_uid)
        b.wait_progress(uids)
        for i, n in enumerate(names):
            def terminate(n: str = n) -> None:
                measure_change(b, ns, f"lt-{n}-run", lambda: b.set_state(ns, n, "Terminated"),
                               deleting, "gone", (n, "RolledBack"), out["terminate"])

            def delete(n: str = n) -> None:
                measure_change(b, ref, f"ref-{n}", lambda: b.batch.delete_namespaced_job(
                    f"ref-{n}", ref, propagation_policy="Foreground"), deleting, "gone", None,
                    out["delete"])

            first, second = (terminate, delete) if i % 2 == 0 else (delete, terminate)
            first()
            second()
    mark = b.timeline.mark()
    b.set_state(ns, "cycle", "Terminated")
    b.timeline.wait(mark, lambda s: s.kind == "LongTask" and s.name == "cycle"
                    and s.phase == "RolledBack", "the last task to be rolled back")
    b.operators[-1].stop()  # part 2 has the machine (and its own operator) to itself
    return out


def print_control(out: dict[str, Latency], changes: int) -> None:
    print(f"1. control latency over {changes} changes each, ms (median / p95), from the "
          "spec.state edit:")
    print(f"   {'':24} {'Job patched':>15}  {'runner pod':>22}  {'phase':>22}")
    rows = (("Running -> Paused", "pause", "gone", "Paused"),
            ("Paused -> Running", "resume", "running", "Running"),
            ("-> Terminated", "terminate", "gone", "RolledBack"),
            ("floor: suspend by hand", "suspend", "gone", ""),
            ("floor: resume by hand", "unsuspend", "running", ""),
            ("floor: delete by hand", "delete", "gone", ""))
    for label, key, pod, phase in rows:
        steps = out[key].steps
        phase_text = f"{phase} {stats(steps['phase'])}" if "phase" in steps else ""
        print(f"   {label:24} {stats(steps['job']):>15}  {pod + ' ' + stats(steps['pod']):>22}"
              f"  {phase_text:>22}")
    for op, floor, what in (("pause", "suspend", "pause"), ("resume", "unsuspend", "resume"),
                            ("terminate", "delete", "terminate")):
        extra = (statistics.median(out[op].steps["pod"])
                 - statistics.median(out[floor].steps["pod"]))
        print(f"   the operator adds {extra * 1000:5.0f} ms (median) to a {what}'s runner pod "
              "step over the floor")


# --------------------------------------------------------------------------- 2. scale


def scale(b: Bench, tasks: int, keys: int) -> None:
    """Part 2: ``tasks`` tiny Exports at once over ``keys`` concurrency keys."""
    ns = "scale"
    b.namespace(ns)
    op = b.operator(ns)
    time.sleep(2)  # let the fresh operator settle before its idle figures are read
    _, idle_rss, cpu_before = op.usage()
    names = [f"t{i:04d}" for i in range(tasks)]
    key_of = {n: f"k{i % keys:03d}" for i, n in enumerate(names)}
    t = b.timeline
    phases: dict[str, list[tuple[float, str]]] = {n: [] for n in names}
    read_from = t.mark()
    read = [read_from]  # timeline position up to which phases are collected

    def all_final() -> bool:
        """Collect the new LongTask events (called under the timeline's lock)."""
        for s in t.items[read[0]:]:
            if s.kind == "LongTask" and s.namespace == ns and s.name in phases and s.phase:
                seen = phases[s.name]
                if not seen or seen[-1][1] != s.phase:
                    seen.append((s.at, s.phase))
        read[0] = len(t.items)
        return all(p and p[-1][1] in FINAL for p in phases.values())

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: b.create_task(ns, n, export_spec("tiny", key_of[n])), names))
    created = time.monotonic() - started
    ended = t.until(all_final, f"all {tasks} tasks to be final", timeout=30 * 60)
    peak, rss, cpu_after = op.usage()

    def first(name: str, wanted: Callable[[str], bool]) -> float:
        return next(at for at, phase in phases[name] if wanted(phase)) - started

    # The runner pods' own lifetimes, from the same watch: Running -> Succeeded or Failed.
    pod_run: dict[str, float] = {}
    pod_end: dict[str, float] = {}
    for s in t.items[read_from:]:
        if s.kind == "Pod" and s.namespace == ns and s.job:
            if s.phase == "Running":
                pod_run.setdefault(s.job, s.at - started)
            elif s.phase in ("Succeeded", "Failed"):
                pod_end.setdefault(s.job, s.at - started)
    seen_at = [first(n, lambda p: True) for n in names]
    running_at = [first(n, lambda p: p == "Running") for n in names]
    final_at = [first(n, lambda p: p in FINAL) for n in names]
    outcome = {n: phases[n][-1][1] for n in names}
    queued = sum(1 for n in names if any(p == "Queued" for _, p in phases[n]))
    holders = [running_at[i] for i in range(min(keys, tasks))]
    handoffs: list[float] = []
    to_pod: list[float] = []  # admitted -> runner pod running
    runner: list[float] = []  # runner pod running -> ended: the runner process itself
    to_final: list[float] = []  # runner pod ended -> final status
    chains: dict[str, tuple[float, float]] = {}
    overlaps = 0  # a task Running before the one ahead of it on its key was final
    for key in sorted(set(key_of.values())):
        members = [i for i, n in enumerate(names) if key_of[n] == key]
        run_time = 0.0
        handoffs.extend(running_at[c] - final_at[a] for a, c in itertools.pairwise(members))
        for i in members:
            job = f"lt-{names[i]}-run"
            if job in pod_run and job in pod_end:
                to_pod.append(pod_run[job] - running_at[i])
                runner.append(pod_end[job] - pod_run[job])
                to_final.append(final_at[i] - pod_end[job])
                run_time += pod_end[job] - pod_run[job]
        chains[key] = (final_at[members[-1]], run_time)
        overlaps += sum(1 for a, c in itertools.pairwise(members) if running_at[c] < final_at[a])
    slowest = max(chains, key=lambda k: chains[k][0])
    total, run_time = chains[slowest]
    others = sorted({o for o in outcome.values() if o != "Succeeded"})
    per_key = tasks / keys
    waiters = names[keys:]  # every task but the first of its key had to wait
    unseen = sum(1 for n in waiters if not any(p == "Queued" for _, p in phases[n]))
    log = op.log.read_text(errors="replace")
    retries = log.count("failed temporarily")
    exhausted = log.count("connection pool exhausted")

    print(f"2. {tasks} LongTasks at once (tiny Exports of 20 rows), {keys} concurrency keys "
          f"({per_key:.0f} per key, {queued} queued at some point); seconds from the first "
          "create:")
    print(f"   created (8 client threads)           {created:7.1f} s")
    print(f"   each given a status by the operator  {max(seen_at):7.1f} s   (per task, create "
          f"-> status: median {statistics.median(seen_at) * 1000:,.0f} ms)")
    print(f"   each key's first task admitted       {max(holders):7.1f} s")
    print(f"   all admitted (Running)               {max(running_at):7.1f} s")
    print(f"   all final                            {ended - started:7.1f} s   "
          f"({sum(1 for o in outcome.values() if o == 'Succeeded')} Succeeded"
          + (f", others: {others}" if others else "") + ")")
    if handoffs:
        print(f"   queue hand-off, holder final -> next Running: {stats(handoffs)} ms "
              f"(median / p95); one task per key at a time: {overlaps} overlaps")
    if unseen:
        print(f"   {unseen} of the {len(waiters)} tasks that had to wait were never shown "
              "Queued: the operator first reached them when their key was free")
    print(f"   per task, ms (median / p95): admitted -> runner pod running {stats(to_pod)}; "
          f"the runner process (the floor) {stats(runner)}; runner ended -> final status "
          f"{stats(to_final)}")
    print(f"   the slowest key ({slowest}) ended at {total:.1f} s: {run_time:.1f} s of it in "
          f"runner processes, {total - run_time:.1f} s in the operator and the control plane")
    print(f"   operator process: peak RSS (VmHWM) {peak:6.1f} MB (idle after start "
          f"{idle_rss:.1f} MB, {rss:.1f} MB at the end); CPU {cpu_after - cpu_before:6.1f} s "
          f"over {ended - started:.0f} s ({(cpu_after - cpu_before) / tasks * 1000:.0f} ms "
          "per task)")
    print(f"   operator log: {retries} handler calls failed and retried"
          + (f" ({exhausted} of them 'connection pool exhausted')" if exhausted else ""))


# --------------------------------------------------------------------------- 3. failover


def failover(b: Bench, rounds: int) -> None:
    """Part 3: SIGKILL the elected leader while an Export runs and ask for a pause at once."""
    ns = "failover"
    b.namespace(ns)
    elected = {"LONGTASK_OPERATOR_STANDALONE": "false",
               "LONGTASK_OPERATOR_LEASE_NAMESPACE": ns}
    ops = [b.operator(ns, elected) for _ in range(2)]
    defaults = OperatorSettings.model_fields
    lease = defaults["lease_duration_seconds"].default
    timing = (f"lease {lease} s, renew deadline {defaults['renew_deadline_seconds'].default} s, "
              f"retry {defaults['retry_period_seconds'].default} s")

    def leader(among: Sequence[Operator]) -> Operator:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            leading = [op for op in among if op.leads()]
            if len(leading) == 1:
                return leading[0]
            time.sleep(0.05)
        raise SystemExit("no single leader")

    handovers: list[float] = []
    pauses: list[float] = []
    for i in range(rounds):
        old = leader(ops)
        name = f"fo{i}"
        uid = b.create_task(ns, name, export_spec("slow", f"fo-{i}", SLOW_RATE))
        b.wait_progress([uid])
        mark = b.timeline.mark()
        old.kill()
        killed = time.monotonic()
        b.set_state(ns, name, "Paused")
        leader([op for op in ops if op is not old])
        handovers.append(time.monotonic() - killed)
        def is_paused(seen: Seen, task: str = name) -> bool:
            return (seen.kind == "LongTask" and seen.namespace == ns and seen.name == task
                    and seen.phase == "Paused")

        paused = b.timeline.wait(mark, is_paused, f"{name} to be Paused")
        pauses.append(paused.at - killed)
        old.start()  # back, as a standby

    def line(values: Sequence[float]) -> str:
        return (f"median {statistics.median(values):5.1f} s, max {max(values):5.1f} s  "
                f"({', '.join(f'{v:.1f}' for v in values)})")

    print(f"3. Failover: two elected operators ({timing}); {rounds} SIGKILLs of the leader "
          "while an Export runs, a pause asked for at once; seconds after the SIGKILL:")
    print(f"   the other holds the Lease     {line(handovers)}   floor: the lease, {lease} s")
    print(f"   the task is Paused            {line(pauses)}")


# --------------------------------------------------------------------------- 4. throttle


def server_now(db: psycopg2.extensions.connection) -> dt.datetime:
    """PostgreSQL's clock, which the chunk log's times are on."""
    with db.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        row = cur.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def record_holds(db: psycopg2.extensions.connection, uid: str, limit: int) -> dt.datetime:
    """Wait until the task record's rate limit is ``limit``; the server's time then."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with db.cursor() as cur:
            cur.execute("SELECT rate_limit, clock_timestamp() FROM longtask.tasks "
                        "WHERE uid = %s", (uid,))
            row = cur.fetchone()
        if row is not None and row[0] == limit:
            return row[1]  # type: ignore[no-any-return]
        time.sleep(0.01)
    raise SystemExit(f"the record of {uid} never held rate limit {limit}")


def chunks_since(db: psycopg2.extensions.connection, uid: str,
                 since: dt.datetime) -> list[tuple[int, dt.datetime]]:
    """``(rows, commit time)`` of the run's chunks that locked the record after ``since``."""
    with db.cursor() as cur:
        cur.execute("SELECT rows, commit_requested_at FROM longtask.chunks WHERE task_uid = %s "
                    "AND mode = 'run' AND started_at > %s ORDER BY seq", (uid, since))
        return [(int(r[0]), r[1]) for r in cur.fetchall()]


def held_rate(b: Bench, uid: str, since: dt.datetime, limit: int) -> tuple[dt.datetime, float]:
    """The commit time of the first chunk that locked the record after ``since`` (so read
    its limit), and the rows per second of those committed over the next ``HELD_SECONDS``
    against ``limit``."""
    deadline = time.monotonic() + WAIT
    while not (chunks := chunks_since(b.db, uid, since)):
        if time.monotonic() > deadline:
            raise SystemExit(f"{uid} committed no chunk at its new limit")
        time.sleep(0.01)
    first = chunks[0][1]
    time.sleep(max(0.0, HELD_SECONDS - (server_now(b.db) - first).total_seconds()) + 0.3)
    window = [c for c in chunks_since(b.db, uid, since)
              if (c[1] - first).total_seconds() <= HELD_SECONDS]
    span = (window[-1][1] - first).total_seconds()
    rate = sum(rows for rows, _ in window[1:]) / span if span > 0 else 0.0
    return first, rate / limit


def throttle(b: Bench, rounds: int) -> None:
    """Part 4: patch spec.rateLimit of a running Export; set a bare Job's record by hand."""
    ns, ref = "throttle", "throttle-ref"
    b.namespace(ns)
    b.namespace(ref)
    b.operator(ns)
    low, high = THROTTLE_RATES  # both runners start at SLOW_RATE
    uid = b.create_task(ns, "throttled", export_spec("slow", "throttled", low))
    job, ref_uid = bare_job(ref, "ref-throttled", b.cluster.runner_image)
    b.batch.create_namespaced_job(ref, job)
    b.wait_progress([uid, ref_uid])
    written: list[float] = []
    effect: dict[str, list[float]] = {"operator": [], "floor": []}
    held: dict[str, list[float]] = {"operator": [], "floor": []}
    for i in range(rounds):
        limit = high if i % 2 == 0 else low
        started = server_now(b.db)
        b.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "throttled",
                                                {"spec": {"rateLimit": limit}})
        seen = record_holds(b.db, uid, limit)
        written.append((seen - started).total_seconds())
        first, ratio = held_rate(b, uid, seen, limit)
        effect["operator"].append((first - started).total_seconds())
        held["operator"].append(ratio)

        started = server_now(b.db)
        with b.db.cursor() as cur:
            cur.execute("UPDATE longtask.tasks SET rate_limit = %s WHERE uid = %s",
                        (limit, ref_uid))
        seen = server_now(b.db)
        first, ratio = held_rate(b, ref_uid, seen, limit)
        effect["floor"].append((first - started).total_seconds())
        held["floor"].append(ratio)
    b.set_state(ns, "throttled", "Terminated")
    b.batch.delete_namespaced_job("ref-throttled", ref, propagation_policy="Foreground")

    def ratios(values: Sequence[float]) -> str:
        return (f"median {statistics.median(values):4.2f}, min {min(values):4.2f}, "
                f"max {max(values):4.2f}")

    inside = sum(abs(r - 1) <= HELD_TOLERANCE for r in held["operator"])
    print(f"4. Live throttle: {rounds} changes of spec.rateLimit of a running Export between "
          f"{low} and {high} rows/s; ms from the change (median / p95):")
    print(f"   the task record holds the new limit      {stats(written)}")
    print(f"   the first chunk at it committed          {stats(effect['operator'])}   "
          f"floor, the record set by hand: {stats(effect['floor'])}")
    op_median = statistics.median(effect["operator"])
    floor_median = statistics.median(effect["floor"])
    print(f"   the operator adds {1000 * (op_median - floor_median):5.0f} ms (median) to the "
          f"floor; ratio {op_median / floor_median:4.2f}")
    print(f"   rate held over the next {HELD_SECONDS:.0f} s, committed / limit: "
          f"{ratios(held['operator'])}  (floor: {ratios(held['floor'])}); "
          f"{inside} of {rounds} within {100 * HELD_TOLERANCE:.0f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--changes", type=int, default=20,
                        help="changes of each kind in part 1 (0 skips it)")
    parser.add_argument("--tasks", type=int, default=300,
                        help="LongTasks created at once in part 2 (0 skips it)")
    parser.add_argument("--keys", type=int, default=60,
                        help="concurrency keys the tasks of part 2 share (at most ~90: "
                        "each running runner holds two of PostgreSQL's 200 connections)")
    parser.add_argument("--failovers", type=int, default=5,
                        help="SIGKILLs of the elected leader in part 3 (0 skips it)")
    parser.add_argument("--throttles", type=int, default=10,
                        help="changes of spec.rateLimit in part 4 (0 skips it)")
    args = parser.parse_args()
    began = time.monotonic()
    try:
        with bench_stack() as b:
            seed_forms(b.db)
            print(f"stack up in {time.monotonic() - began:.0f} s ({os.cpu_count()} cores)",
                  flush=True)
            if args.changes:
                print_control(control_latency(b, args.changes), args.changes)
                sys.stdout.flush()
            if args.tasks:
                scale(b, args.tasks, max(1, min(args.keys, args.tasks)))
                sys.stdout.flush()
            if args.failovers:
                failover(b, args.failovers)
                sys.stdout.flush()
            if args.throttles:
                throttle(b, args.throttles)
    except kube.KubeBinariesMissing as exc:
        raise SystemExit(str(exc)) from exc
    print(f"total {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
