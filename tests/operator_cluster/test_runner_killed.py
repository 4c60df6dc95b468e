"""A runner killed outright (not by a pause) is replaced by the Job controller; the new pod
resumes from the last checkpoint and the final data has no duplicate."""

from __future__ import annotations

import os
import signal
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def test_a_killed_runner_is_replaced_and_resumes_to_the_same_data(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection, db_url: str) -> None:
    file_id = villages("crashed")
    villages("reference")
    uid = s.start_slow(tasks, operator_process, db, "crashed", file_id, rows=2000,
                       rate=2500)

    os.kill(tasks.runner_pid(uid), signal.SIGKILL)
    seen = tasks.watch_phases("crashed", {"Succeeded", "Failed"}, timeout=90,
                              operator=operator_process)

    assert seen == ["Running", "Succeeded"], seen
    assert len(tasks.jobs(uid, "run")) == 1
    job = tasks.wait_job_complete(uid)
    assert job["status"].get("failed") == 1, (
        f"the kill counts once towards backoffLimit: {job['status']}")
    assert len({c["epoch"] for c in s.chunks(db, uid)}) == 2, "two runners, one after another"
    s.upload_directly(db_url, file_id, "reference")
    assert s.form_checksum(db, "crashed") == s.form_checksum(db, "reference")
