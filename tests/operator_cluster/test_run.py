"""A LongTask runs to success through the operator, the Job controller and the real runner."""

from __future__ import annotations

from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

from longtask.constants import API_VERSION, KIND

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]


def test_baseline_upload_runs_to_success_with_one_owned_job_and_progress(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    file_id = villages("villages")
    created = tasks.create("villages", s.baseline_spec(file_id, "villages", rate_limit=4000))
    uid = created["metadata"]["uid"]

    seen = tasks.watch_phases("villages", {"Succeeded", "Failed"}, timeout=90,
                              operator=operator_process)

    assert seen in (["Pending", "Running", "Succeeded"], ["Running", "Succeeded"]), (
        f"phases seen: {seen}; status: {tasks.get('villages')['status']}")
    status = tasks.get("villages")["status"]
    rec = s.record(db, uid)
    assert rec is not None and rec["run_status"] == "succeeded", rec
    progress = status["progress"]
    assert (progress["total"], progress["done"], progress["percent"]) == (
        rec["total"], rec["done"], 100), progress
    assert progress["total"] == 14859 and progress["rowErrors"] == rec["row_errors"], progress
    assert s.rows_of_task(db, uid) == rec["done"] - rec["row_errors"], "one row per good line"

    jobs = tasks.jobs(uid)
    assert [j["metadata"]["name"] for j in jobs] == ["lt-villages-run"], jobs
    owner = jobs[0]["metadata"]["ownerReferences"]
    assert owner == [{"apiVersion": API_VERSION, "kind": KIND, "name": "villages",
                      "uid": uid, "controller": True, "blockOwnerDeletion": True}], owner
    assert status["jobName"] == "lt-villages-run"

    table = tasks.kubectl("get", "lt", "villages").splitlines()
    header = table[0].split()
    row = dict(zip(header, table[1].split(), strict=False))
    assert (row["PHASE"], row["PROGRESS"]) == ("Succeeded", "100"), table
