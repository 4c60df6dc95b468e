"""Several operator replicas: one holds the Lease and acts, the others wait and take over.

Each replica is ``python -m longtask.operator`` with leader election on (the chart's
default), all of them candidates for one Lease in the test's namespace, with the default
timing (lease 8 s, renew deadline 5 s, retry 1 s) unless a test says otherwise. The Jobs
are recorded from a watch, so a duplicate made and deleted again would be seen; every
replica's log shows that it acted only after it took the Lease.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.kube import KubeCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

LEASE = "longtask-operator"
LEASE_DURATION = 8  # OperatorSettings' default
TASKS = 20
KEYS = 4  # organizations (so concurrency keys) the 20 tasks share: four run at once, five
# after each other
SLICE_ROWS = 300  # rows of the Karnataka file each of the 20 uploads loads
# Log lines of a process that acts on tasks: none may come before its lease_acquired.
ACTIONS = {"phase_changed", "job_created", "job_suspended", "job_resumed", "job_deleted",
           "event_posted", "key_released"}

Start = Callable[..., list[s.OperatorProcess]]


@pytest.fixture
def replicas(kube_cluster: KubeCluster, namespace: str, operator_db_url: str,
             tasks: s.Tasks, tmp_path: Path) -> Iterator[Start]:
    """``start(n, **env) -> [replica]``: n elected operators, started one after another
    (each answering its probe); all stopped afterwards, before the finalizers are
    stripped."""
    started: list[s.OperatorProcess] = []

    def start(n: int, **env: str) -> list[s.OperatorProcess]:
        for _ in range(n):
            op = s.OperatorProcess(
                kube_cluster, namespace, operator_db_url,
                tmp_path / f"operator-{len(started)}.log",
                extra_env={"LONGTASK_OPERATOR_STANDALONE": "false",
                           "LONGTASK_OPERATOR_LEASE_NAMESPACE": namespace,
                           "LONGTASK_OPERATOR_LEASE_NAME": LEASE, **env})
            started.append(op)
            op.start()
        return list(started)

    try:
        yield start
    finally:
        for op in started:
            op.stop()


@pytest.fixture
def lease_holder(kube_api: Any, namespace: str) -> Callable[[], str | None]:
    """``lease_holder()``: the Lease's holderIdentity now, None when it has none or does
    not exist."""
    leases = client.CoordinationV1Api(kube_api)

    def read() -> str | None:
        try:
            lease = leases.read_namespaced_lease(LEASE, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return lease.spec.holder_identity if lease.spec else None

    return read


def leaders(ops: list[s.OperatorProcess]) -> list[s.OperatorProcess]:
    """The running replicas whose probe says they lead."""
    return [op for op in ops if op.proc is not None and op.proc.poll() is None
            and (op.health() or {}).get("leader")]


def wait_leader(ops: list[s.OperatorProcess], lease_holder: Callable[[], str | None],
                timeout: float = 60) -> s.OperatorProcess:
    """Wait until exactly one running replica leads and the Lease names it; that one."""
    def one() -> s.OperatorProcess | None:
        found = leaders(ops)
        if len(found) != 1:
            return None
        identity = (found[0].health() or {}).get("identity")
        return found[0] if identity and identity == lease_holder() else None

    return s.wait_until(one, timeout=timeout, interval=0.1, what="exactly one leader",
                        on_timeout=lambda: "\n".join(op.tail(15) for op in ops))


def assert_acted_only_while_leading(ops: list[s.OperatorProcess]) -> None:
    """Each replica's log: no action before its ``lease_acquired``, none without one."""
    for op in ops:
        entries = op.log_entries()
        messages = [e.get("event") for e in entries]
        acquired = messages.index("lease_acquired") if "lease_acquired" in messages else None
        early = [m for m in messages[:acquired] if m in ACTIONS]
        assert early == [], (f"{op.log_path.name} acted before it held the Lease: "
                             f"{early[:5]}\n{op.tail(30)}")


def upload_slices(db: psycopg2.extensions.connection, db_url: str, org: int,
                  karnataka: bytes, names: list[str]) -> dict[str, tuple[str, Any]]:
    """The first ``SLICE_ROWS`` rows of the Karnataka file, stored once for each of ``KEYS``
    organizations (``org``, acme, among them), and a village form for each name in the
    organization of its task (task ``i`` in organization ``i % KEYS``); per name, the
    organization's slug and the file's id."""
    lines = karnataka.split(b"\n")
    header = lines[0].decode().split(",")
    data = b"\n".join(lines[:SLICE_ROWS + 1]) + b"\n"
    orgs = [(s.ORG, org)] + [(slug, s.create_org(db, slug))
                             for slug in (f"{s.ORG}-{k}" for k in range(1, KEYS))]
    files = [s.store_file(db_url, data, s.KARNATAKA, organization=slug) for slug, _ in orgs]
    placed = {}
    for i, name in enumerate(names):
        slug, org_id = orgs[i % KEYS]
        s.create_village_form(db, org_id, name, header)
        placed[name] = (slug, files[i % KEYS])
    return placed


@pytest.mark.parametrize("n", [2, 3], ids=["2-replicas", "3-replicas"])
def test_replicas_make_exactly_one_job_per_task_and_hand_over_when_the_leader_dies(
        n: int, replicas: Start, tasks: s.Tasks, lease_holder: Callable[[], str | None],
        db: psycopg2.extensions.connection, db_url: str, org: int, karnataka: bytes,
        batch_v1: Any, namespace: str) -> None:
    ops = replicas(n)
    first = wait_leader(ops, lease_holder)
    names = [f"r{i:02d}" for i in range(TASKS)]
    placed = upload_slices(db, db_url, org, karnataka, names)
    jobs = s.JobRecorder(batch_v1, namespace)
    jobs.start_and_wait()
    try:
        uids = {}
        for name in names:
            slug, file_id = placed[name]
            # The organization's one BaselineUpload key: KEYS organizations, KEYS keys.
            spec = s.baseline_spec(file_id, name, organization=slug)
            uids[name] = tasks.create(name, spec)["metadata"]["uid"]
        # Kill the leader once some tasks have Jobs and most still wait for their key.
        s.wait_until(lambda: len(jobs.seen) >= KEYS + 2, timeout=90,
                     what=f"{KEYS + 2} run Jobs", on_timeout=first.tail)
        first.kill()
        killed_at = time.monotonic()
        jobs_at_kill = len(jobs.seen)
        rest = [op for op in ops if op is not first]
        second = wait_leader(rest, lease_holder)
        handover = time.monotonic() - killed_at
        print(f"\n{n} replicas: SIGKILL of the leader with {jobs_at_kill} of {TASKS} Jobs "
              f"made; the next leader after {handover:.1f} s (lease duration "
              f"{LEASE_DURATION} s)")

        def all_final() -> dict[str, str | None] | None:
            phases = {name: tasks.phase(name) for name in names}
            final = {"Succeeded", "Failed", "RolledBack", "Terminated"}
            return phases if all(p in final for p in phases.values()) else None

        phases = s.wait_until(all_final, timeout=180, interval=0.5, what="all 20 tasks final",
                              on_timeout=second.tail)
        time.sleep(2)  # a Job made by a late, repeated decision would show by now
    finally:
        jobs.stop()

    assert phases == dict.fromkeys(names, "Succeeded"), phases
    made = jobs.modes()
    assert set(made) == {"run"}, made
    assert Counter(made["run"]) == Counter(f"lt-{name}-run" for name in names), (
        f"exactly one run Job per task, ever: {sorted(made['run'])}")
    for name in names:
        rec = s.record(db, uids[name])
        assert rec is not None and rec["run_status"] == "succeeded", (name, rec)
    assert leaders(ops) == [second], "one leader after the handover"
    assert_acted_only_while_leading(ops)
    assert second.log_events("lease_acquired"), second.tail()
    if n == 3:
        (idle,) = [op for op in rest if op is not second]
        assert idle.log_events("lease_acquired") == [], "the third replica stayed a standby"


def test_a_pause_asked_for_right_after_the_leader_is_killed_is_applied_by_the_next(
        replicas: Start, tasks: s.Tasks, lease_holder: Callable[[], str | None],
        db: psycopg2.extensions.connection, villages: Any) -> None:
    ops = replicas(2)
    first = wait_leader(ops, lease_holder)
    uid = s.start_slow(tasks, first, db, "slow", villages("slow"))

    first.kill()
    killed_at = time.monotonic()
    tasks.set_state("slow", "Paused", requested_by="svc-failover", reason="pause")
    (second,) = [op for op in ops if op is not first]
    tasks.wait_phase("slow", "Paused", timeout=90, operator=second)
    applied = time.monotonic() - killed_at
    print(f"\nSIGKILL of the leader, then a pause: Paused {applied:.1f} s after the kill "
          f"(lease duration {LEASE_DURATION} s; target 15 s)")

    assert second.log_events("lease_acquired"), second.tail()
    assert applied < 60, f"the pause took {applied:.1f} s after the leader died"
    live = [p["metadata"]["name"] for p in tasks.pods(uid)
            if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
    assert live == [], f"paused means no runner pod left: {live}"
    s.wait_until(lambda: not tasks.pods(uid), timeout=20, what="the stopped pod to be removed")
    rec = s.record(db, uid)
    assert rec is not None and 0 < rec["done"] < 14859, rec
    last = tasks.get("slow")["status"]["lastAction"]
    assert (last["state"], last["requestedBy"]) == ("Paused", "svc-failover"), last
    assert_acted_only_while_leading(ops)


def test_a_leader_stopped_with_sigterm_gives_the_lease_up_at_once(
        replicas: Start, lease_holder: Callable[[], str | None]) -> None:
    # A lease duration far above the bound asserted: only a release can hand over in time.
    ops = replicas(2, LONGTASK_OPERATOR_LEASE_DURATION_SECONDS="30")
    first = wait_leader(ops, lease_holder)

    stopping = time.monotonic()
    first.stop()
    stopped = time.monotonic() - stopping
    (second,) = [op for op in ops if op is not first]
    wait_leader([second], lease_holder, timeout=30)
    handover = time.monotonic() - stopping
    print(f"\nSIGTERM of the leader: stopped in {stopped:.1f} s, the next leader after "
          f"{handover:.1f} s (lease duration 30 s)")

    assert first.proc is not None and first.proc.returncode == 0, first.tail()
    assert first.log_events("lease_released"), first.tail()
    assert handover < 20, f"the handover took {handover:.1f} s: the Lease was not given up"


def test_a_leader_frozen_past_its_lease_steps_down_when_it_wakes(
        replicas: Start, lease_holder: Callable[[], str | None]) -> None:
    ops = replicas(2)
    first = wait_leader(ops, lease_holder)
    assert first.proc is not None

    with s.frozen(first.proc.pid):
        (second,) = [op for op in ops if op is not first]
        wait_leader([second], lease_holder)
    first.proc.wait(timeout=30)

    assert first.proc.returncode == 1, first.tail()
    assert first.log_events("lease_lost"), first.tail()
    assert leaders(ops) == [second]
