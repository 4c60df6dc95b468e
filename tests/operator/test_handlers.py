"""The handler's order of work, fast: :func:`reconcile` over an in-memory cluster.

A reconcile posts the transition's Event, then writes the status, then carries out the
actions in order, and a pause or terminate is held in the runner's record before the Job is
suspended or deleted (a resume or start is released before the Job runs again). The same
code runs against the real control plane in ``tests/operator_cluster/``; here the cluster
and the record store are our own in-memory implementations of the operator's interfaces
(``inmemory.py``), so each case takes milliseconds.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import kopf
import pytest
from longtask.operator import handlers
from longtask.operator.settings import OperatorSettings

from longtask.phases import RunOutcome
from longtask.taskrecord import RunnerRecord

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inmemory import InMemoryCluster, InMemoryRecords, Journal, pod_for, task_body

pytestmark = pytest.mark.timeout(30)

SETTINGS = OperatorSettings(runner_image="localhost/longtask/runner:test",
                            progress_interval_seconds=7)


@pytest.fixture
def journal() -> Journal:
    return []


@pytest.fixture
def cluster(journal: Journal) -> InMemoryCluster:
    return InMemoryCluster(journal)


@pytest.fixture
def records(journal: Journal) -> InMemoryRecords:
    return InMemoryRecords(journal)


@pytest.fixture
def op(cluster: InMemoryCluster, records: InMemoryRecords) -> handlers.Operator:
    return handlers.Operator(settings=SETTINGS, kube=cluster, records=records)


def started(op: handlers.Operator, cluster: InMemoryCluster, journal: Journal,
            name: str = "upload") -> dict[str, Any]:
    """A task reconciled into Running, with its run Job and one live runner pod; the
    journal emptied."""
    cluster.add("LongTask", task_body(name))
    handlers.reconcile(op, "ns", name)
    job = cluster.get_job("ns", f"lt-{name}-run")
    assert job is not None, journal
    cluster.add("Pod", pod_for(job))
    journal.clear()
    return job


def request(cluster: InMemoryCluster, name: str, state: str) -> None:
    """A client changes ``spec.state`` (as the API or kubectl does)."""
    cluster.objects[("LongTask", "ns", name)]["spec"]["state"] = state


def start_of(name: str) -> Journal:
    """What starting a task does, in order: its Event, its status, the release, its Job."""
    return [
        ("post_event", name, "Started"),
        ("patch_status", name, "Running"),
        ("hold", name, None),
        ("create_job", f"lt-{name}-run", False),
    ]


def test_a_new_task_posts_its_event_then_writes_its_status_then_starts(op, cluster, journal):
    cluster.add("LongTask", task_body("upload"))
    handlers.reconcile(op, "ns", "upload")
    assert journal == start_of("upload")


def test_a_pause_is_held_in_the_record_before_the_job_is_suspended(op, cluster, journal):
    started(op, cluster, journal)
    request(cluster, "upload", "Paused")
    handlers.reconcile(op, "ns", "upload")
    assert journal == [
        ("post_event", "upload", "PauseRequested"),
        ("patch_status", "upload", "Pausing"),
        ("hold", "upload", "Paused"),
        ("set_suspend", "lt-upload-run", True),
    ]


def test_a_pause_ends_paused_once_the_pod_is_gone_with_no_second_hold(op, cluster, journal):
    started(op, cluster, journal)
    request(cluster, "upload", "Paused")
    handlers.reconcile(op, "ns", "upload")
    del cluster.objects[("Pod", "ns", "lt-upload-run-pod")]
    journal.clear()
    handlers.reconcile(op, "ns", "upload")
    assert journal == [
        ("post_event", "upload", "StoppedAtCheckpoint"),
        ("patch_status", "upload", "Paused"),
    ]


def test_a_resume_releases_the_hold_before_the_job_runs_again(op, cluster, journal, records):
    started(op, cluster, journal)
    request(cluster, "upload", "Paused")
    handlers.reconcile(op, "ns", "upload")
    del cluster.objects[("Pod", "ns", "lt-upload-run-pod")]
    handlers.reconcile(op, "ns", "upload")
    journal.clear()
    request(cluster, "upload", "Running")
    handlers.reconcile(op, "ns", "upload")
    assert journal == [
        ("post_event", "upload", "Resumed"),
        ("patch_status", "upload", "Running"),
        ("hold", "upload", None),
        ("set_suspend", "lt-upload-run", False),
    ]
    assert list(records.holds.values()) == [None]


def test_a_terminate_is_held_in_the_record_before_the_job_is_deleted(op, cluster, journal):
    started(op, cluster, journal)
    request(cluster, "upload", "Terminated")
    handlers.reconcile(op, "ns", "upload")
    assert journal == [
        ("post_event", "upload", "TerminateRequested"),
        ("patch_status", "upload", "Terminating"),
        ("hold", "upload", "Terminated"),
        ("delete_job", "lt-upload-run", "Foreground"),
    ]


def test_a_running_task_reconciled_again_only_refreshes_its_status(op, cluster, journal):
    started(op, cluster, journal)
    handlers.reconcile(op, "ns", "upload")
    assert [entry[0] for entry in journal] in ([], ["patch_status"]), journal


def test_a_freed_key_admits_the_next_task_after_the_first_ends(op, cluster, journal, records):
    job = started(op, cluster, journal, "first")
    cluster.add("LongTask", task_body("second"))
    handlers.reconcile(op, "ns", "second")
    assert journal == [("post_event", "second", "WaitingForKey"),
                       ("patch_status", "second", "Queued")]
    journal.clear()
    first_uid = cluster.objects[("LongTask", "ns", "first")]["metadata"]["uid"]
    records.records[first_uid] = RunnerRecord(run_status=RunOutcome.SUCCEEDED, total=5, done=5)
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    cluster.objects[("Job", "ns", "lt-first-run")]["status"] = job["status"]
    cluster.objects[("Pod", "ns", "lt-first-run-pod")]["status"]["phase"] = "Succeeded"
    handlers.reconcile(op, "ns", "first")
    assert journal == [
        ("post_event", "first", "Completed"),
        ("patch_status", "first", "Succeeded"),
        *start_of("second"),
    ]


def test_deleting_a_terminated_task_holds_its_run_then_deletes_its_job(op, cluster, journal):
    started(op, cluster, journal)
    request(cluster, "upload", "Terminated")
    body = cluster.task("ns", "upload")
    assert body is not None
    memo = kopf.Memo(operator=op)
    with pytest.raises(kopf.TemporaryError):
        handlers.on_delete(body=body, memo=memo)
    assert journal == [("hold", "upload", "Terminated"),
                       ("delete_job", "lt-upload-run", "Foreground")]


def test_handlers_are_registered_with_the_settings_given_and_nothing_read_at_import():
    registry = handlers.register(SETTINGS, kopf.OperatorRegistry())
    spawned = registry._spawning.get_all_handlers()
    assert [getattr(h, "interval", None) for h in spawned] == [7], spawned
    assert not hasattr(handlers, "SETTINGS")


def test_an_organization_at_its_limit_waits_whatever_its_keys(cluster, records, journal):
    limited = SETTINGS.model_copy(update={"max_running_per_organization": 1})
    op = handlers.Operator(settings=limited, kube=cluster, records=records)
    job = started(op, cluster, journal, "first")
    second = task_body("second")
    second["spec"].update(type="Export", params={"form": "survey", "from": "2017-08-01",
                                                  "to": "2017-08-31"})
    cluster.add("LongTask", second)
    cluster.add("LongTask", task_body("theirs", organization="globex"))

    handlers.reconcile(op, "ns", "second")
    assert journal == [("post_event", "second", "WaitingForOrganization"),
                       ("patch_status", "second", "Queued")]
    message = cluster.objects[("LongTask", "ns", "second")]["status"]["message"]
    assert message == ("waiting: organization 'acme' already runs 1 tasks, its limit in "
                       "this namespace")
    journal.clear()
    handlers.reconcile(op, "ns", "theirs")
    assert journal == start_of("theirs"), "another organization is not held back"
    journal.clear()

    # The first ends: its organization has room again, and the export starts.
    first_uid = cluster.objects[("LongTask", "ns", "first")]["metadata"]["uid"]
    records.records[first_uid] = RunnerRecord(run_status=RunOutcome.SUCCEEDED, total=5, done=5)
    cluster.objects[("Job", "ns", "lt-first-run")]["status"] = {
        "conditions": [{"type": "Complete", "status": "True"}]}
    cluster.objects[("Pod", "ns", "lt-first-run-pod")]["status"]["phase"] = "Succeeded"
    assert job is not None
    handlers.reconcile(op, "ns", "first")
    assert journal == [
        ("post_event", "first", "Completed"),
        ("patch_status", "first", "Succeeded"),
        *start_of("second"),
    ]


# ------------------------------------------------------------------ bounds and the throttle


def test_a_bound_reached_patches_the_spec_and_the_next_reconcile_resumes(
        op: handlers.Operator, cluster: InMemoryCluster, journal: Journal) -> None:
    """The operator's own request goes through the spec, at the version it decided on,
    after its status; the reconcile that follows resumes as for any client."""
    started(op, cluster, journal)
    request(cluster, "upload", "Paused")
    body = cluster.objects[("LongTask", "ns", "upload")]
    body["spec"]["maxPauseSeconds"] = 1
    handlers.reconcile(op, "ns", "upload")
    body["status"]["pauseRequestedAt"] = "2026-01-01T00:00:00Z"  # the pause began long ago
    journal.clear()

    handlers.reconcile(op, "ns", "upload")

    kinds = [entry[0] for entry in journal]
    assert kinds[-1] == "patch_task" and "patch_status" in kinds, journal
    assert journal[-1][2] == {"state": "Running", "resumeAt": None}, journal
    assert body["metadata"]["annotations"]["collect.atlan.com/requested-by"] == (
        "longtask-operator")
    journal.clear()
    handlers.reconcile(op, "ns", "upload")
    assert ("set_suspend", "lt-upload-run", False) in journal, journal
    assert body["status"]["lastAction"]["requestedBy"] == "longtask-operator", body["status"]


def test_a_spec_patch_is_skipped_when_a_client_changed_the_task_since(
        cluster: InMemoryCluster, journal: Journal) -> None:
    cluster.add("LongTask", task_body("upload"))
    version = cluster.objects[("LongTask", "ns", "upload")]["metadata"]["resourceVersion"]
    cluster.patch_status("ns", "upload", {"phase": "Paused"})

    assert not cluster.patch_task("ns", "upload", {"spec": {"state": "Running"}}, version)
    assert cluster.objects[("LongTask", "ns", "upload")]["spec"]["state"] == "Running"


def test_a_wake_up_reconciles_the_task_once_at_its_time() -> None:
    wakeups = handlers.Wakeups()
    woken: list[str] = []
    done = threading.Event()

    def wake(name: str) -> None:
        woken.append(name)
        done.set()

    wakeups.schedule("ns", "upload", 0.2, lambda: wake("late"))
    wakeups.schedule("ns", "upload", 0.05, lambda: wake("early"))  # replaces the later one
    wakeups.schedule("ns", "upload", 0.1, lambda: wake("between"))  # one as soon is pending
    assert done.wait(5), "no wake-up came"
    time.sleep(0.3)
    wakeups.close()
    assert woken == ["early"], woken


def test_a_throttle_reaches_the_record_store(
        op: handlers.Operator, cluster: InMemoryCluster, records: InMemoryRecords,
        journal: Journal) -> None:
    started(op, cluster, journal)
    uid = cluster.objects[("LongTask", "ns", "upload")]["metadata"]["uid"]
    records.records[uid] = RunnerRecord(run_status=RunOutcome.RUNNING, rate_limit=None)
    cluster.objects[("LongTask", "ns", "upload")]["spec"]["rateLimit"] = 25

    handlers.reconcile(op, "ns", "upload")

    assert ("rate_limit", "upload", 25) in journal, journal
    assert records.rate_limits[uid] == 25
