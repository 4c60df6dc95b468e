"""The live throttle end to end: ``spec.rateLimit`` edited with kubectl while a real runner
pod uploads, the operator writes it into the task record, and the committed rate follows
from the runner's next chunk (operator/README.md, "The throttle")."""

from __future__ import annotations

import json
import time
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def committed_rate(db: psycopg2.extensions.connection, uid: str, seconds: float) -> float:
    """Rows per second the runner committed over the next ``seconds``."""
    first, start = (s.record(db, uid) or {}).get("done", 0), time.monotonic()
    time.sleep(seconds)
    return ((s.record(db, uid) or {}).get("done", 0) - first) / (time.monotonic() - start)


def throttle(tasks: s.Tasks, db: psycopg2.extensions.connection, name: str, uid: str,
             limit: int | None, why: str, operator: s.OperatorProcess) -> None:
    """``kubectl patch`` the limit with who and why, then wait for the record to hold it."""
    patch = {"metadata": {"annotations": {ANNOTATION_REQUESTED_BY: "dba-dev",
                                          ANNOTATION_REASON: why}},
             "spec": {"rateLimit": limit}}
    tasks.kubectl("patch", "lt", name, "--type=merge", "-p", json.dumps(patch))
    s.wait_until(lambda: (s.record(db, uid) or {}).get("rate_limit") == limit, timeout=20,
                 what=f"the record to hold rate limit {limit}", on_timeout=operator.tail)


def test_a_throttle_changed_mid_run_is_the_committed_rate_from_the_next_chunk(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    file_id = villages("throttled")
    uid = s.start_slow(tasks, operator_process, db, "throttled", file_id, rows=200, rate=200)
    at_start = committed_rate(db, uid, 2.0)

    throttle(tasks, db, "throttled", uid, 1000, "night window", operator_process)
    time.sleep(0.5)  # the chunk in flight, then the new pace
    raised = committed_rate(db, uid, 2.0)
    rate_seen = (s.record(db, uid) or {}).get("rate_per_second")

    throttle(tasks, db, "throttled", uid, 100, "peak hours", operator_process)
    time.sleep(0.5)
    lowered = committed_rate(db, uid, 2.0)
    task = tasks.get("throttled")
    done_lowered = (s.record(db, uid) or {}).get("done", 0)

    throttle(tasks, db, "throttled", uid, None, "unlimited", operator_process)
    seen = tasks.watch_phases("throttled", {"Succeeded", "Failed"}, timeout=90,
                              operator=operator_process)

    # Within a quarter of the limit, over two seconds each: a burst to catch up with the
    # old pace, or a stall to pay back a faster one, would fall far outside.
    assert 150 <= at_start <= 250, f"at 200 rows/s: {at_start:.0f}"
    assert 750 <= raised <= 1250, f"raised to 1000 rows/s: {raised:.0f}"
    assert rate_seen is not None and 700 <= rate_seen <= 1300, (
        f"the record's ratePerSecond after the raise: {rate_seen}")
    assert 75 <= lowered <= 125, f"lowered to 100 rows/s: {lowered:.0f}"
    assert done_lowered < 14859, "the task ended before the last throttle could be seen"
    status = task["status"]
    assert status["rateLimit"] == 100, status
    action = status["lastAction"]
    assert (action["changed"], action["rateLimit"], action["state"]) == (
        ["rateLimit"], 100, "Running"), action
    assert (action["requestedBy"], action["reason"]) == ("dba-dev", "peak hours"), action
    assert seen[-1] == "Succeeded", seen
    changes = [e["message"] for e in tasks.events("throttled")
               if e["reason"] == "RateLimitChanged"]
    assert len(changes) == 3, changes
    assert "200 rows/s -> 1000 rows/s" in changes[0], changes
    assert "requested by dba-dev: peak hours" in changes[1], changes
    assert "-> unlimited" in changes[2], changes
    final = tasks.get("throttled")["status"]
    assert "rateLimit" not in final, final
    assert len(tasks.jobs(uid, "run")) == 1, "the throttle needs no new Job"
