"""Rollback after a stop mid-run and a crash mid-rollback, for export and team creation.

(Baseline upload has the same test in ``test_baseline.py``.)
"""

from __future__ import annotations

import datetime as dt
import signal
import time

import pytest
import runner_support as s

from devcluster import seed
from longtask import constants
from longtask.db import connect

SMALL_ROLLBACK_CHUNKS = {"LONGTASK_RUNNER_CHUNK_MAX_ROWS": "50",
                         "LONGTASK_RUNNER_CHUNK_INITIAL_ROWS": "50",
                         "LONGTASK_RUNNER_CHUNK_MIN_ROWS": "10"}


def stop_after(db, db_url, task, column: str, at_least: int, tmp_path,  # type: ignore[no-untyped-def]
               mode: str = "run", sig: signal.Signals = signal.SIGTERM, env=None) -> int:
    """Run ``mode`` in a process and send ``sig`` once ``column`` reaches ``at_least``."""
    proc = s.spawn(db_url, task, mode, log=tmp_path / f"{mode}.log", env=env)
    deadline = time.monotonic() + 90
    while (s.record_or_none(db, task.uid, column) or 0) < at_least:
        assert time.monotonic() < deadline and proc.poll() is None, (
            (tmp_path / f"{mode}.log").read_text()[-2000:])
        time.sleep(0.01)
    proc.send_signal(sig)
    return proc.wait(timeout=30)


@pytest.mark.timeout(180)
def test_team_creation_rolls_back_after_a_stop_and_a_crashed_rollback(db, db_url, tmp_path):
    s.create_org(db)
    before = s.snapshot(db)
    text = "team,manager_phone,member_phones\n" + "".join(
        f"Team {i},98{i:08d},97{i:08d};96{i % 500:08d}\n" for i in range(3000))
    file_id = s.store_bytes(db_url, text.encode())
    task = s.task("BulkTeamCreate", {"fileId": file_id}, rate_limit=1500)

    assert stop_after(db, db_url, task, "done", 600, tmp_path) == constants.EXIT_STOPPED
    assert s.snapshot(db) != before
    stop_after(db, db_url, task, "rollback_done", 300, tmp_path, "rollback", signal.SIGKILL,
               SMALL_ROLLBACK_CHUNKS)
    assert s.record(db, task.uid)["rollback_status"] == "running"

    assert s.run_inline(db_url, task, "rollback") == constants.EXIT_DONE
    assert s.snapshot(db) == before
    assert s.run_inline(db_url, task, "rollback") == constants.EXIT_DONE, "idempotent"
    assert s.snapshot(db) == before


@pytest.mark.timeout(180)
def test_export_rolls_back_after_a_stop_and_a_crashed_rollback(db, db_url, tmp_path):
    org = s.create_org(db)
    form = seed.submission_form(db, org)
    seed.submissions(db, org, form, 20_000, dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
                     dt.datetime(2019, 1, 1, tzinfo=dt.UTC))
    task = s.task("Export", {"form": "household-survey", "from": "2015-01-01",
                             "to": "2018-12-31"}, rate_limit=4000)
    env = {"LONGTASK_RUNNER_CHUNK_MAX_ROWS": "200"}
    proc = s.spawn(db_url, task, log=tmp_path / "run.log", env=env)
    deadline = time.monotonic() + 90
    while (s.record_or_none(db, task.uid, "done") or 0) < 4000:
        assert time.monotonic() < deadline and proc.poll() is None, "no progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == constants.EXIT_STOPPED
    parts = s.count_parts(db, task.uid)
    assert parts >= 10

    # A lock on part 5 holds the rollback (two parts a chunk) after its second chunk, so
    # the kill lands mid-way whatever the speed of this machine.
    blocker = connect(db_url)
    with blocker.cursor() as cur:
        cur.execute("SELECT 1 FROM longtask.export_parts WHERE task_uid = %s AND part = 5 "
                    "FOR UPDATE", (task.uid,))
    rollback = s.spawn(db_url, task, "rollback", log=tmp_path / "rb.log",
                       env={"LONGTASK_RUNNER_CHUNK_MAX_ROWS": "2",
                            "LONGTASK_RUNNER_CHUNK_INITIAL_ROWS": "2",
                            "LONGTASK_RUNNER_CHUNK_MIN_ROWS": "1"})
    while s.count_parts(db, task.uid) > parts - 4:
        assert time.monotonic() < deadline + 60 and rollback.poll() is None, "no rollback"
        time.sleep(0.01)
    rollback.send_signal(signal.SIGKILL)
    rollback.wait(timeout=30)
    blocker.rollback()
    blocker.close()
    assert s.count_parts(db, task.uid) == parts - 4

    assert s.run_inline(db_url, task, "rollback") == constants.EXIT_DONE
    assert s.count_parts(db, task.uid) == 0
    assert s.run_inline(db_url, task, "rollback") == constants.EXIT_DONE, "idempotent"
