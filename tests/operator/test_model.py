"""Parsing the LongTask, the Job and the runner's record; writing status as a merge patch."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from longtask.operator.decide import JobState
from pydantic import ValidationError

from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY
from longtask.model import Progress, Task, TaskStatus, status_patch
from longtask.phases import DesiredState, OnTerminate, Phase, RollbackOutcome, RunOutcome
from longtask.taskrecord import RunnerRecord

BODY: dict[str, Any] = {
    "apiVersion": "collect.atlan.com/v1alpha1",
    "kind": "LongTask",
    "metadata": {
        "name": "acme-export",
        "namespace": "collect",
        "uid": "1e0b6a3c-8f0e-4f43-9f77-0c6a1d4f2b10",
        "generation": 3,
        "creationTimestamp": "2026-11-30T07:00:00Z",
        "annotations": {ANNOTATION_REQUESTED_BY: "pipeline", ANNOTATION_REASON: "wrong range"},
    },
    "spec": {
        "type": "Export",
        "organization": "acme",
        "params": {"form": "Visits", "from": "2017-08-01", "to": "2017-08-31"},
        "state": "Paused",
        "concurrencyKey": "exports/acme",
        "rateLimit": 500,
    },
}


def test_task_is_parsed_from_the_object_body() -> None:
    t = Task.from_body(BODY)
    got = (
        t.name,
        t.generation,
        t.created_at,
        t.requested_by,
        t.request_reason,
        t.spec.state,
        t.spec.on_terminate,
        t.spec.rate_limit,
        t.spec.effective_concurrency_key(),
    )
    want = (
        "acme-export",
        3,
        dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC),
        "pipeline",
        "wrong range",
        DesiredState.PAUSED,
        OnTerminate.ROLLBACK,
        500,
        "exports/acme",
    )
    assert got == want, f"expected {want}, got {got}"


def test_default_concurrency_key_comes_from_the_type() -> None:
    spec = {k: v for k, v in BODY["spec"].items() if k != "concurrencyKey"}
    t = Task.from_body({**BODY, "spec": spec})
    assert t.spec.effective_concurrency_key() == "Export/acme/Visits"


def test_a_spec_with_an_unknown_state_is_refused() -> None:
    with pytest.raises(ValidationError, match="state"):
        Task.from_body({**BODY, "spec": {**BODY["spec"], "state": "Stopped"}})


def test_status_round_trips_through_its_wire_form() -> None:
    st = TaskStatus(
        phase=Phase.RUNNING,
        started_at=dt.datetime(2026, 11, 30, 7, 1, tzinfo=dt.UTC),
        progress=Progress(total=10, done=4, percent=40),
        running_seconds=60,
    )
    wire = st.to_wire()
    assert wire["startedAt"] == "2026-11-30T07:01:00Z", wire
    assert TaskStatus.from_body(wire) == st


def test_status_ignores_keys_it_does_not_own() -> None:
    st = TaskStatus.from_body({"phase": "Queued", "kopf": {"progress": {}}})
    assert st.phase is Phase.QUEUED


def test_status_patch_holds_only_what_changed_and_nulls_what_went() -> None:
    old = TaskStatus(
        phase=Phase.RUNNING, message="running", progress=Progress(done=1, eta_seconds=9)
    )
    new = TaskStatus(phase=Phase.RUNNING, progress=Progress(done=2))
    want = {"message": None, "progress": {"done": 2, "etaSeconds": None}}
    assert status_patch(old, new) == want, status_patch(old, new)


def test_status_patch_of_equal_statuses_is_empty() -> None:
    st = TaskStatus(phase=Phase.PAUSED, paused_seconds=3)
    assert status_patch(st, st) == {}


def test_job_state_reads_suspend_deletion_and_failed_condition() -> None:
    job = {
        "metadata": {"name": "lt-x-run", "deletionTimestamp": "2026-11-30T07:05:00Z"},
        "spec": {"suspend": True},
        "status": {
            "active": 1,
            "conditions": [
                {"type": "Suspended", "status": "True"},
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "PodFailurePolicy",
                    "message": "Container runner exited with code 3",
                },
                {"type": "Complete", "status": "False"},
            ],
        },
    }
    want = JobState(
        name="lt-x-run",
        suspended=True,
        deleting=True,
        complete=False,
        failed=True,
        failure_reason="PodFailurePolicy",
        failure_message="Container runner exited with code 3",
        active=1,
    )
    assert JobState.from_body(job) == want, JobState.from_body(job)


def test_job_state_of_a_fresh_job_has_no_conditions() -> None:
    assert JobState.from_body({"metadata": {"name": "lt-x-run"}}) == JobState(name="lt-x-run")


def test_runner_record_is_read_from_a_tasks_row() -> None:
    row = {
        "run_status": "stopped",
        "rollback_status": "none",
        "total": 100,
        "done": 40,
        "row_errors": 2,
        "rate_per_second": 12.5,
        "eta_seconds": 4.8,
        "message": None,
        "rollback_total": None,
        "rollback_done": 0,
        "rollback_conflicts": 0,
        "rollback_message": None,
    }
    want = RunnerRecord(
        run_status=RunOutcome.STOPPED,
        rollback_status=RollbackOutcome.NONE,
        total=100,
        done=40,
        row_errors=2,
        rate_per_second=12.5,
        eta_seconds=4.8,
    )
    assert RunnerRecord.from_row(row) == want
