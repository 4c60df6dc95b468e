"""Terminate racing other requests and other phases: one well-defined end, one rollback Job
at most.

A runner held stopped (SIGSTOP) stands for one slow to stop, so the second request lands
while the first is still being carried out, whatever the machine's speed.
"""

from __future__ import annotations

from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

from longtask.constants import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]


def rollback_jobs_made(operator: s.OperatorProcess, name: str) -> int:
    """How many times the operator created the task's rollback Job, from its log."""
    return sum(1 for e in operator.log_events("job_created")
               if e.get("job") == f"lt-{name}-rollback")


def assert_rolled_back_once(tasks: s.Tasks, operator: s.OperatorProcess,
                            db: psycopg2.extensions.connection, name: str, uid: str) -> None:
    assert tasks.jobs(uid, "run") == [], "the run Job is deleted"
    assert len(tasks.jobs(uid, "rollback")) == 1
    assert rollback_jobs_made(operator, name) == 1
    assert s.rows_of_task(db, uid) == 0, "the task's rows are rolled back"
    reasons = [e["reason"] for e in tasks.events(name)]
    assert reasons.count("RollbackStarted") == 1, reasons


def test_a_second_terminate_while_terminating_changes_nothing(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    uid = s.start_slow(tasks, operator_process, db, "twice", villages("twice"))

    with s.frozen(tasks.runner_pid(uid)):
        tasks.set_state("twice", "Terminated", requested_by="svc-first", reason="wrong file")
        tasks.wait_phase("twice", "Terminating", timeout=20, operator=operator_process)
        tasks.kubectl("patch", "lt", "twice", "--type=merge", "-p",
                      '{"spec":{"state":"Terminated"}}')
        tasks.set_state("twice", "Terminated", requested_by="svc-second", reason="again")
        assert tasks.phase("twice") == "Terminating"
    seen = tasks.watch_phases("twice", {"RolledBack", "Failed"}, timeout=60,
                              operator=operator_process)

    assert seen[-1] == "RolledBack", seen
    assert_rolled_back_once(tasks, operator_process, db, "twice", uid)
    last = tasks.get("twice")["status"]["lastAction"]
    assert (last["state"], last["requestedBy"]) == ("Terminated", "svc-first"), (
        f"the request that took effect is the first: {last}")


def test_terminate_while_pausing_rolls_back_once(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    uid = s.start_slow(tasks, operator_process, db, "pausing", villages("pausing"))

    with s.frozen(tasks.runner_pid(uid)):
        tasks.set_state("pausing", "Paused")
        tasks.wait_phase("pausing", "Pausing", timeout=20, operator=operator_process)
        tasks.set_state("pausing", "Terminated")
        tasks.wait_phase("pausing", "Terminating", timeout=20, operator=operator_process)
    seen = tasks.watch_phases("pausing", {"RolledBack", "Failed"}, timeout=60,
                              operator=operator_process)

    assert seen[-1] == "RolledBack", seen
    assert "Paused" not in seen, seen
    assert_rolled_back_once(tasks, operator_process, db, "pausing", uid)


def test_terminate_of_a_paused_task_rolls_back_once(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    uid = s.start_slow(tasks, operator_process, db, "resting", villages("resting"))
    tasks.set_state("resting", "Paused")
    tasks.wait_phase("resting", "Paused", timeout=30, operator=operator_process)

    tasks.set_state("resting", "Terminated")
    seen = tasks.watch_phases("resting", {"RolledBack", "Failed"}, timeout=60,
                              operator=operator_process)

    assert seen[0] == "Paused" and seen[-1] == "RolledBack", seen
    assert_rolled_back_once(tasks, operator_process, db, "resting", uid)


def test_terminate_of_a_queued_task_ends_at_once_without_any_job(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    file_id = villages("holder")
    villages("waiting")
    holder = s.start_slow(tasks, operator_process, db, "holder", file_id)
    waiting = tasks.create("waiting", s.baseline_spec(file_id, "waiting"))["metadata"]["uid"]
    tasks.wait_phase("waiting", "Queued", timeout=20, operator=operator_process)

    tasks.set_state("waiting", "Terminated")
    ended = tasks.wait_phase("waiting", "RolledBack", "Terminated", "Failed", timeout=20,
                             operator=operator_process)

    status = ended["status"]
    assert status["phase"] == "RolledBack", status
    assert status["conditions"][0]["reason"] == "NothingWritten", status["conditions"]
    assert tasks.jobs(waiting) == [], "no Job for a task that never started"
    assert not [e for e in operator_process.log_events("job_created")
                if e.get("task") == "waiting"], "no Job was ever created for it"
    assert s.record(db, waiting) is None, "no runner ever ran for it"
    assert tasks.phase("holder") == "Running", "the key's holder is not disturbed"
    assert len(tasks.jobs(holder)) == 1


def test_a_late_terminate_of_a_succeeded_task_is_ignored_with_an_event(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    uid = tasks.create("done", s.baseline_spec(villages("done"), "done"))["metadata"]["uid"]
    tasks.wait_phase("done", "Succeeded", timeout=90, operator=operator_process)
    rows = s.rows_of_task(db, uid)

    tasks.set_state("done", "Terminated", requested_by="svc-late", reason="too late")
    ignored = s.wait_until(
        lambda: [e for e in tasks.events("done") if e["reason"] == "ActionIgnored"],
        timeout=20, what="an ActionIgnored event", on_timeout=operator_process.tail)

    assert "not rolled back" in ignored[0]["message"], ignored[0]["message"]
    status = tasks.get("done")["status"]
    assert status["phase"] == "Succeeded", status
    assert status["lastAction"]["state"] == "Terminated", status["lastAction"]
    assert tasks.jobs(uid, "rollback") == [] and rollback_jobs_made(operator_process,
                                                                    "done") == 0
    assert s.rows_of_task(db, uid) == rows > 0, "a completed task keeps its rows"


def test_a_terminate_the_runners_success_beat_is_reported_as_too_late(
        tasks: s.Tasks, villages: Any, db_url: str, kube_cluster: Any, namespace: str,
        tmp_path: Any) -> None:
    """The runner recorded success while the operator was down, after it had written
    Running; a terminate then arrives (kubectl: the API refuses it). Started, the operator
    reports Succeeded, says the terminate came too late, and rolls nothing back."""
    created = tasks.create("late", s.baseline_spec(villages("late"), "late"))
    # Why this test writes status: Running is what the operator wrote before it went down.
    tasks.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "late",
        {"status": {"phase": "Running", "startedAt": "2026-01-01T00:00:00Z"}})
    s.record_success(db_url, created, done=14859)
    tasks.set_state("late", "Terminated", requested_by="svc-late", reason="wrong file")

    operator = s.OperatorProcess(kube_cluster, namespace, db_url, tmp_path / "operator.log")
    operator.start()
    try:
        ended = tasks.wait_phase("late", "Succeeded", "RolledBack", "Failed", "Terminated",
                                 timeout=30, operator=operator)
        said = s.wait_until(
            lambda: [e for e in tasks.events("late")
                     if e["reason"] == "CompletedBeforeTerminate"],
            timeout=20, what="a CompletedBeforeTerminate event", on_timeout=operator.tail)
        made = rollback_jobs_made(operator, "late")
    finally:
        operator.stop()

    status = ended["status"]
    assert status["phase"] == "Succeeded", status
    succeeded = [c for c in status["conditions"] if c["type"] == "Succeeded"]
    assert succeeded[0]["status"] == "True", succeeded
    assert succeeded[0]["reason"] == "CompletedBeforeTerminate", succeeded
    assert "before the terminate" in said[0]["message"], said[0]["message"]
    assert status["lastAction"]["state"] == "Terminated", status["lastAction"]
    assert made == 0 and tasks.jobs(created["metadata"]["uid"]) == [], "nothing rolled back"
