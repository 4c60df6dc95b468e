"""The operator killed outright (SIGKILL) and started again: exactly one Job, and the task
still completes. Its runner carries on meanwhile; nothing is lost or done twice."""

from __future__ import annotations

from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def test_operator_killed_while_running_restarts_to_one_job_and_completion(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    uid = s.start_slow(tasks, operator_process, db, "survivor", villages("survivor"),
                       rows=2000)

    operator_process.kill()
    done_at_kill = (s.record(db, uid) or {})["done"]
    s.wait_until(lambda: (s.record(db, uid) or {})["done"] > done_at_kill + 1000, timeout=20,
                 what="the runner to carry on while the operator is down")
    operator_process.start()
    seen = tasks.watch_phases("survivor", {"Succeeded", "Failed"}, timeout=60,
                              operator=operator_process)

    assert seen == ["Running", "Succeeded"], seen
    jobs = tasks.jobs(uid)
    assert [j["metadata"]["name"] for j in jobs] == ["lt-survivor-run"], jobs
    assert not jobs[0]["status"].get("failed"), jobs[0]["status"]
    rec = s.record(db, uid)
    assert rec is not None and len({c["epoch"] for c in s.chunks(db, uid)}) == 1, (
        "one runner did the whole run")
    assert s.rows_of_task(db, uid) == rec["done"] - rec["row_errors"]


def test_operator_killed_right_after_creating_the_job_leaves_one_job(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    file_id = villages("abrupt")
    uid = tasks.create("abrupt", s.baseline_spec(file_id, "abrupt", rate_limit=3000))[
        "metadata"]["uid"]
    made = s.wait_until(lambda: tasks.jobs(uid), timeout=30, interval=0.02,
                        what="the run Job to appear", on_timeout=operator_process.tail)
    operator_process.kill()

    operator_process.start()
    seen = tasks.watch_phases("abrupt", {"Succeeded", "Failed"}, timeout=60,
                              operator=operator_process)

    assert seen[-1] == "Succeeded", seen
    jobs = tasks.jobs(uid)
    assert [j["metadata"]["uid"] for j in jobs] == [made[0]["metadata"]["uid"]], (
        "exactly one Job: the one made before the kill")
    reasons = [e["reason"] for e in tasks.events("abrupt")]
    assert reasons == ["Started", "Completed"], reasons
    rec = s.record(db, uid)
    assert rec is not None and s.rows_of_task(db, uid) == rec["done"] - rec["row_errors"]
