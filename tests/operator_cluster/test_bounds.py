"""Pauses that end by themselves and a running time that counts running only, on the
local control plane with real runner pods: ``resumeAt`` and ``maxPauseSeconds`` each end a
pause; ``maxRunningSeconds`` terminates a task, its paused time not counted
(operator/README.md, "Bounds")."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

from longtask.constants import ANNOTATION_REQUESTED_BY

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def parse(moment: str) -> dt.datetime:
    return dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))


def pause(tasks: s.Tasks, name: str, **bounds: Any) -> None:
    tasks.kubectl("patch", "lt", name, "--type=merge", "-p",
                  json.dumps({"spec": {"state": "Paused", **bounds}}))


def reasons(tasks: s.Tasks, name: str) -> list[str]:
    return [e["reason"] for e in tasks.events(name)]


def test_resume_at_ends_a_pause_and_the_run_goes_on(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    uid = s.start_slow(tasks, operator_process, db, "scheduled", villages("scheduled"),
                       rows=100, rate=200)
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)).replace(microsecond=0)
    pause(tasks, "scheduled", resumeAt=at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    paused = tasks.wait_phase("scheduled", "Paused", timeout=30, operator=operator_process)
    assert parse(paused["status"]["pauseEndsAt"]) == at, paused["status"]
    done_paused = (s.record(db, uid) or {})["done"]

    resumed = tasks.wait_phase("scheduled", "Running", timeout=30, operator=operator_process)
    resumed_at = dt.datetime.now(dt.UTC)

    assert at <= resumed_at <= at + dt.timedelta(seconds=8), (at, resumed_at)
    assert "resumeAt" not in resumed["spec"] and resumed["spec"]["state"] == "Running"
    assert "pauseEndsAt" not in resumed["status"], resumed["status"]
    action = resumed["status"]["lastAction"]
    assert (action["state"], action["requestedBy"]) == ("Running", "longtask-operator"), action
    assert resumed["metadata"]["annotations"][ANNOTATION_REQUESTED_BY] == "longtask-operator"
    assert "ScheduledResume" in reasons(tasks, "scheduled"), reasons(tasks, "scheduled")
    s.wait_until(lambda: (s.record(db, uid) or {})["done"] > done_paused, timeout=30,
                 what="the resumed runner to commit rows", on_timeout=operator_process.tail)


def test_max_pause_seconds_ends_a_pause_so_the_key_is_not_held_past_it(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    uid = s.start_slow(tasks, operator_process, db, "forgotten", villages("forgotten"),
                       rows=100, rate=200)
    pause(tasks, "forgotten", maxPauseSeconds=4, onMaxPause="Resume")
    paused = tasks.wait_phase("forgotten", "Paused", timeout=30, operator=operator_process)
    requested = parse(paused["status"]["pauseRequestedAt"])
    assert parse(paused["status"]["pauseEndsAt"]) == requested + dt.timedelta(seconds=4)

    tasks.wait_phase("forgotten", "Running", timeout=30, operator=operator_process)
    resumed_at = dt.datetime.now(dt.UTC)

    assert resumed_at <= requested + dt.timedelta(seconds=4 + 8), (requested, resumed_at)
    events = [e for e in tasks.events("forgotten") if e["reason"] == "MaxPauseReached"]
    assert len(events) == 1 and "resumed" in events[0]["message"], events
    before = (s.record(db, uid) or {})["done"]
    s.wait_until(lambda: (s.record(db, uid) or {})["done"] > before, timeout=30,
                 what="the resumed runner to commit rows", on_timeout=operator_process.tail)

    # A plain kubectl resume of a pause with a resumeAt: the operator removes the resumeAt,
    # so it cannot end a later pause.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    pause(tasks, "forgotten", resumeAt=later.strftime("%Y-%m-%dT%H:%M:%SZ"),
          maxPauseSeconds=None)
    tasks.wait_phase("forgotten", "Paused", timeout=30, operator=operator_process)
    tasks.kubectl("patch", "lt", "forgotten", "--type=merge", "-p",
                  '{"spec":{"state":"Running"}}')
    s.wait_until(lambda: "resumeAt" not in tasks.get("forgotten")["spec"], timeout=20,
                 what="the stale resumeAt to be removed", on_timeout=operator_process.tail)
    assert tasks.get("forgotten")["spec"]["state"] == "Running"


def test_max_running_seconds_counts_running_only_then_terminates_with_rollback(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    spec = s.baseline_spec(villages("deadline"), "deadline", rate_limit=200)
    uid = tasks.create("deadline", {**spec, "maxRunningSeconds": 8})["metadata"]["uid"]
    s.wait_until(lambda: (s.record(db, uid) or {}).get("done", 0) >= 100, timeout=60,
                 what="the runner to commit rows", on_timeout=operator_process.tail)
    tasks.set_state("deadline", "Paused")
    tasks.wait_phase("deadline", "Paused", timeout=30, operator=operator_process)
    time.sleep(10)  # longer than maxRunningSeconds: paused time must not count
    assert tasks.phase("deadline") == "Paused", tasks.get("deadline")["status"]
    tasks.set_state("deadline", "Running")

    ended = tasks.wait_phase("deadline", "RolledBack", "Failed", timeout=90,
                             operator=operator_process)

    status = ended["status"]
    assert status["phase"] == "RolledBack", status
    assert 8 <= status["runningSeconds"] <= 8 + 20, status
    assert status["pausedSeconds"] >= 9, status
    assert status["lastAction"]["requestedBy"] == "longtask-operator", status["lastAction"]
    assert "MaxRunningReached" in reasons(tasks, "deadline"), reasons(tasks, "deadline")
    assert s.rows_of_task(db, uid) == 0, "the rollback left rows of the task"
