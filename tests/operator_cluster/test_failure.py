"""A file the runner cannot read fails the task with the runner's message, and the Job is not
retried: the runner's permanent-failure exit code is a podFailurePolicy FailJob."""

from __future__ import annotations

import time
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def test_an_unreadable_file_fails_the_task_with_the_runners_message_and_no_retry(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection, db_url: str, karnataka: bytes) -> None:
    villages("villages")
    header_only = karnataka.split(b"\n", 1)[0] + b"\n"
    file_id = s.store_file(db_url, header_only, "header-only.csv")
    uid = tasks.create("unreadable", s.baseline_spec(file_id, "villages"))["metadata"]["uid"]

    failed = tasks.wait_phase("unreadable", "Failed", "Succeeded", timeout=60,
                              operator=operator_process)

    status = failed["status"]
    rec = s.record(db, uid)
    assert rec is not None and rec["run_status"] == "failed", rec
    assert status["phase"] == "Failed", status
    assert "no data rows" in rec["message"], rec["message"]
    assert rec["message"] in status["message"], (status["message"], rec["message"])
    assert status["conditions"][0]["reason"] == "RunnerFailed", status["conditions"]
    assert s.rows_of_task(db, uid) == 0

    def job_failed() -> dict[str, Any] | None:
        job = tasks.jobs(uid, "run")[0]
        true = {c["type"]: c for c in job["status"].get("conditions") or []
                if c["status"] == "True"}
        return job if "Failed" in true else None

    job = s.wait_until(job_failed, timeout=30, what="the run Job's Failed condition")
    condition = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert condition["reason"] == "PodFailurePolicy", condition
    assert job["status"].get("failed") == 1, job["status"]
    time.sleep(2)  # a retry would make a second pod within a second
    pods = tasks.pods(uid)
    assert len(pods) == 1, f"one pod, not retried: {[p['metadata']['name'] for p in pods]}"
    exit_code = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
    assert exit_code == 3, f"the runner's EXIT_FAILED, got {exit_code}"
