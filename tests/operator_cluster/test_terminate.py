"""Terminate stops the runner for good, then rolls its rows back or keeps them."""

from __future__ import annotations

from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def test_terminate_rolls_back_every_row_and_frees_the_key_for_the_queued_task(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    file_id = villages("first")
    villages("second")
    first = s.start_slow(tasks, operator_process, db, "first", file_id)
    second = tasks.create("second", s.baseline_spec(file_id, "second"))["metadata"]["uid"]
    queued = tasks.wait_phase("second", "Queued", timeout=20, operator=operator_process)
    assert "first" in queued["status"]["message"], queued["status"]["message"]
    assert s.rows_of_task(db, first) > 0

    tasks.set_state("first", "Terminated")
    seen = tasks.watch_phases("first", {"RolledBack", "Failed"}, timeout=60,
                              operator=operator_process)

    assert seen[-1] == "RolledBack", seen
    assert {"Terminating", "RollingBack"} <= set(seen), seen
    assert tasks.jobs(first, "run") == [], "the run Job is deleted"
    rollback = tasks.jobs(first, "rollback")
    assert [j["metadata"]["name"] for j in rollback] == ["lt-first-rollback"], rollback
    tasks.wait_job_complete(first, "rollback")
    assert s.rows_of_task(db, first) == 0, "every row the task wrote is removed"
    rec = s.record(db, first)
    assert rec is not None and rec["rollback_status"] == "succeeded", rec
    status = tasks.get("first")["status"]
    assert status["rollback"]["done"] == rec["rollback_done"] > 0, status["rollback"]
    assert status["rollbackJobName"] == "lt-first-rollback"

    later = tasks.watch_phases("second", {"Succeeded", "Failed"}, timeout=60,
                               operator=operator_process)
    assert later[-1] == "Succeeded", later
    second_status = tasks.get("second")["status"]
    assert second_status["startedAt"] >= status["finishedAt"], (
        "the queued task starts only once the first is rolled back")
    assert s.rows_of_task(db, second) > 0


def test_terminate_with_keep_ends_terminated_with_the_rows_kept(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    uid = s.start_slow(tasks, operator_process, db, "kept", villages("kept"),
                     on_terminate="Keep")

    tasks.set_state("kept", "Terminated")
    seen = tasks.watch_phases("kept", {"Terminated", "RolledBack", "Failed"}, timeout=60,
                              operator=operator_process)

    assert seen[-1] == "Terminated", seen
    # Terminated once no runner pod is left; the garbage collector then removes the Job
    # it deleted in the foreground (its pod's removal is the last dependent it waits for).
    s.wait_until(lambda: tasks.jobs(uid) == [], timeout=30,
                 what="the run Job to be deleted, and no rollback Job made")
    rec = s.record(db, uid)
    assert rec is not None and rec["run_status"] == "stopped", rec
    kept = s.rows_of_task(db, uid)
    assert kept == rec["done"] - rec["row_errors"] > 0, (kept, rec["done"], rec["row_errors"])
    assert tasks.get("kept")["status"]["progress"]["done"] == rec["done"]
