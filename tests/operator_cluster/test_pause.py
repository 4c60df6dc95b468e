"""Pause stops the runner at a checkpoint with no pod left; resume finishes the same data."""

from __future__ import annotations

import time
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def test_pause_suspends_the_job_with_no_pod_left_and_resume_ends_with_identical_data(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection, db_url: str) -> None:
    file_id = villages("paused")
    villages("reference")
    uid = tasks.create("paused", s.baseline_spec(file_id, "paused", rate_limit=1500))[
        "metadata"]["uid"]
    s.wait_until(lambda: (s.record(db, uid) or {}).get("done", 0) >= 3000, timeout=60,
                 what="the runner to commit 3000 rows", on_timeout=operator_process.tail)

    tasks.kubectl("patch", "lt", "paused", "--type=merge", "-p",
                  '{"spec":{"state":"Paused"}}')
    seen = tasks.watch_phases("paused", {"Paused"}, timeout=30, operator=operator_process)
    with db.cursor() as cur:
        cur.execute("SELECT now()")
        row = cur.fetchone()
        assert row is not None
        paused_at = row[0]

    assert seen[0] in ("Running", "Pausing") and seen[-1] == "Paused", seen
    reasons = [e["reason"] for e in tasks.events("paused")]
    assert reasons[-2:] == ["PauseRequested", "StoppedAtCheckpoint"], reasons
    job = tasks.jobs(uid, "run")[0]
    assert job["spec"]["suspend"] is True, job["spec"]
    live = [p["metadata"]["name"] for p in tasks.pods(uid)
            if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
    assert live == [], f"no runner pod may be left when Paused: {live}"
    rec = s.record(db, uid)
    assert rec is not None and rec["run_status"] == "stopped", rec
    done_at_pause = rec["done"]
    assert 0 < done_at_pause < 14859, f"paused mid-way, at {done_at_pause} rows"
    committed = s.chunks(db, uid)
    assert all(c["commit_requested_at"] <= rec["stop_requested_at"] for c in committed), (
        "a chunk was committed after the runner took its stop")
    s.wait_until(lambda: not tasks.pods(uid), timeout=20, what="the stopped pod to be removed")
    time.sleep(2)  # a runner left behind would commit its next chunk within 0.25 s
    later = s.chunks(db, uid)
    assert [c for c in later if c["commit_requested_at"] > paused_at] == [], (
        "chunks committed after Paused was observed")
    assert len(later) == len(committed)
    assert (s.record(db, uid) or {}).get("done") == done_at_pause

    tasks.kubectl("patch", "lt", "paused", "--type=merge", "-p",
                  '{"spec":{"state":"Running"}}')
    seen = tasks.watch_phases("paused", {"Succeeded", "Failed"}, timeout=60,
                              operator=operator_process)

    # The first poll may come after the operator already moved it on (kubectl is slow to
    # start on a busy machine): "Paused" is seen only when it came first.
    assert seen in (["Paused", "Running", "Succeeded"], ["Running", "Succeeded"]), seen
    s.upload_directly(db_url, file_id, "reference")
    assert s.form_checksum(db, "paused") == s.form_checksum(db, "reference")
    assert len(tasks.jobs(uid, "run")) == 1, "pause and resume keep the one run Job"
    job_status = tasks.wait_job_complete(uid)["status"]
    assert not job_status.get("failed"), f"a pause must not count as a pod failure: {job_status}"
    epochs = {c["epoch"] for c in s.chunks(db, uid)}
    assert len(epochs) == 2, f"two runner pods (before and after the pause): {epochs}"
