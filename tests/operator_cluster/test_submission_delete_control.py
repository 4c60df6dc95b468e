"""BulkSubmissionDelete through the operator with real runner pods: paused (no row
deleted while paused), resumed, then terminated, and the rollback Job restores every
submission byte for byte."""

from __future__ import annotations

import datetime as dt
import time

import operator_support as s
import psycopg2.extensions
import pytest

from devcluster import seed
from devcluster.kube import wait_for as wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def submissions(db: psycopg2.extensions.connection) -> tuple[int, str]:
    with db.cursor() as cur:
        cur.execute("SELECT count(*), md5(string_agg(r::text, '|' ORDER BY r.id)) FROM "
                    "(SELECT id, organization_id, form_id, submitted_at, submitted_by, data "
                    "FROM collect.submissions) r")
        count, digest = cur.fetchone()
    db.commit()
    return int(count), str(digest)


def test_paused_resumed_and_terminated_with_every_row_restored(
        tasks: s.Tasks, operator_process: s.OperatorProcess, org: int,
        db: psycopg2.extensions.connection) -> None:
    form = seed.submission_form(db, org)
    seed.submissions(db, org, form, 20_000, dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
                     dt.datetime(2019, 1, 1, tzinfo=dt.UTC))
    before = submissions(db)
    uid = tasks.create("purge-2016", {
        "type": "BulkSubmissionDelete", "organization": s.ORG, "rateLimit": 1500,
        "params": {"form": "household-survey", "from": "2016-01-01", "to": "2017-12-31"},
    })["metadata"]["uid"]
    tasks.wait_phase("purge-2016", "Running", timeout=60, operator=operator_process)
    wait_until(lambda: (s.record(db, uid) or {}).get("done", 0) > 1000, timeout=60,
               what="a first thousand rows deleted")

    tasks.set_state("purge-2016", "Paused", requested_by="support", reason="wrong year?")
    tasks.wait_phase("purge-2016", "Paused", timeout=60, operator=operator_process)
    paused = submissions(db)
    assert paused[0] < before[0]
    live = [p["metadata"]["name"] for p in tasks.pods(uid)
            if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
    assert live == [], f"no running runner pod while paused: {live}"
    wait_until(lambda: not tasks.pods(uid), timeout=20, what="the stopped pod to be removed")
    rec = s.record(db, uid)
    assert rec is not None and before[0] - paused[0] == rec["done"], "counted as deleted"

    time.sleep(1.5)
    assert submissions(db) == paused, "no row deleted while paused"
    tasks.set_state("purge-2016", "Running")
    tasks.wait_phase("purge-2016", "Running", timeout=60, operator=operator_process)
    wait_until(lambda: (s.record(db, uid) or {}).get("done", 0) > rec["done"], timeout=60,
               what="the resumed run to delete more")

    tasks.set_state("purge-2016", "Terminated", requested_by="support",
                    reason="it was 2018 we wanted")
    seen = tasks.watch_phases("purge-2016", {"RolledBack", "Failed"}, timeout=120,
                              operator=operator_process)
    assert seen[-1] == "RolledBack", seen
    assert submissions(db) == before, "every deleted submission back, id and all"
    rec = s.record(db, uid)
    assert rec is not None and rec["rollback_done"] == rec["done"] > 0, rec
