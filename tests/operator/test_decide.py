"""The state machine as a table: what is wanted and seen, and what the operator does.

Every test is one behaviour of the state machine (``operator/README.md``: run, pause,
resume, terminate, roll back, queue, and each race it lists), read as a specification:
given the task, its status and what the handler observed, ``decide`` gives this phase and
these actions.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from longtask.operator.decide import (
    Action,
    CreateRollbackJob,
    CreateRunJob,
    Decision,
    DeleteJob,
    HoldRun,
    JobState,
    Observed,
    PatchSpec,
    PostEvent,
    ReleaseKey,
    ReleaseRun,
    ResumeJob,
    RunnerRecord,
    SetRateLimit,
    SuspendJob,
    decide,
    decide_deletion,
)

from longtask.model import Task, TaskSpec, TaskStatus
from longtask.phases import ConditionType, DesiredState, Phase, RollbackOutcome, RunOutcome

NOW = dt.datetime(2026, 11, 30, 8, 0, 0, tzinfo=dt.UTC)
EARLIER = NOW - dt.timedelta(minutes=10)
NAME = "acme-upload"
RUN_JOB = "lt-acme-upload-run"
ROLLBACK_JOB = "lt-acme-upload-rollback"
KEY = "BaselineUpload/acme"
PARAMS = {"form": "Households", "fileId": "0b9f3f9e-55d5-4a55-a1f0-8f3c6a0f0d2e"}


def task(
    state: str = "Running",
    on_terminate: str = "Rollback",
    *,
    params: dict[str, Any] | None = None,
    requested_by: str | None = None,
    reason: str | None = None,
    generation: int = 1,
    rate_limit: int | None = None,
    **spec_fields: Any,
) -> Task:
    spec = TaskSpec.model_validate(
        {
            "type": "BaselineUpload",
            "organization": "acme",
            "params": PARAMS if params is None else params,
            "state": state,
            "onTerminate": on_terminate,
            **({"rateLimit": rate_limit} if rate_limit is not None else {}),
            **spec_fields,
        }
    )
    return Task(
        name=NAME,
        namespace="collect",
        uid="6f1c1d9e-7c1b-4c0e-9a53-2f0f3c3f7a11",
        generation=generation,
        created_at=EARLIER,
        spec=spec,
        requested_by=requested_by,
        request_reason=reason,
    )


def status(phase: Phase | None, *, started: bool = True, **fields: Any) -> TaskStatus:
    """A status as the operator would have left it in ``phase``."""
    values: dict[str, Any] = {"phase": phase, "accounted_at": EARLIER, "phase_since": EARLIER}
    if started:
        values.update(started_at=EARLIER, job_name=RUN_JOB)
    values.update(fields)
    return TaskStatus(**values)


def run_job(**fields: Any) -> JobState:
    return JobState(name=RUN_JOB, **fields)


def rollback_job(**fields: Any) -> JobState:
    return JobState(name=ROLLBACK_JOB, **fields)


def record(run: RunOutcome = RunOutcome.RUNNING, **fields: Any) -> RunnerRecord:
    return RunnerRecord(run_status=run, **fields)


def work(decision: Decision) -> list[Action]:
    """The actions that change the cluster (events, key releases and the runner record's
    hold left out; :func:`holds` gives those)."""
    return [a for a in decision.actions
            if not isinstance(a, PostEvent | ReleaseKey | HoldRun | ReleaseRun)]


def holds(decision: Decision) -> list[Action]:
    """The hold actions and the Job actions they guard, in the order carried out."""
    return [a for a in decision.actions if isinstance(
        a, HoldRun | ReleaseRun | SuspendJob | ResumeJob | DeleteJob | CreateRunJob)]


def events(decision: Decision) -> list[PostEvent]:
    return [a for a in decision.actions if isinstance(a, PostEvent)]


def outcome(decision: Decision) -> tuple[Phase | None, list[Action]]:
    return decision.status.phase, work(decision)


def expect(decision: Decision, phase: Phase, actions: list[Action]) -> None:
    got = outcome(decision)
    assert got == (phase, actions), (
        f"expected phase {phase} with {actions}, got {got[0]} with {got[1]} "
        f"(message: {decision.status.message!r})"
    )


# --------------------------------------------------------------------------- start and queue


def test_new_admitted_task_creates_its_run_job_and_runs() -> None:
    d = decide(task(), TaskStatus(), Observed(admitted=True), NOW)
    expect(d, Phase.RUNNING, [CreateRunJob(RUN_JOB, suspend=False)])


def test_start_records_start_time_job_name_and_key() -> None:
    d = decide(task(), TaskStatus(), Observed(admitted=True), NOW)
    got = (d.status.started_at, d.status.job_name, d.status.concurrency_key)
    assert got == (NOW, RUN_JOB, KEY), got


def test_new_task_whose_key_is_held_waits_in_queued() -> None:
    d = decide(task(), TaskStatus(), Observed(admitted=False, key_holder="older-upload"), NOW)
    expect(d, Phase.QUEUED, [])
    assert "older-upload" in (d.status.message or ""), d.status.message


def test_queued_records_when_it_started_waiting() -> None:
    d = decide(task(), TaskStatus(), Observed(admitted=False), NOW)
    assert d.status.queued_at == NOW, d.status.queued_at


def test_queued_task_admitted_later_starts_and_keeps_queued_at() -> None:
    before = status(Phase.QUEUED, started=False, queued_at=EARLIER)
    d = decide(task(), before, Observed(admitted=True), NOW)
    expect(d, Phase.RUNNING, [CreateRunJob(RUN_JOB)])
    assert d.status.queued_at == EARLIER, d.status.queued_at


def test_invalid_params_fail_the_task_before_any_job() -> None:
    d = decide(task(params={"form": "Households"}), TaskStatus(), Observed(admitted=True), NOW)
    expect(d, Phase.FAILED, [])
    assert "fileId" in (d.status.message or ""), d.status.message
    assert [e.type for e in events(d)] == ["Warning"], events(d)


def test_status_lost_after_job_creation_is_recovered_without_a_second_job() -> None:
    """Operator killed between creating the Job and writing status: the Job is the proof."""
    d = decide(task(), TaskStatus(), Observed(run_job=run_job(active=1), runner_pods=1), NOW)
    expect(d, Phase.RUNNING, [])


# --------------------------------------------------------------------------- running and outcomes


def test_running_task_reports_progress_from_the_runner_record() -> None:
    rec = record(total=100_000, done=42_500, row_errors=3, rate_per_second=850.0, eta_seconds=67.4)
    d = decide(task(), status(Phase.RUNNING), Observed(run_job=run_job(active=1), record=rec), NOW)
    expect(d, Phase.RUNNING, [])
    got = d.status.progress.model_dump() if d.status.progress else None
    want = {
        "total": 100_000,
        "done": 42_500,
        "row_errors": 3,
        "rate_per_second": 850.0,
        "eta_seconds": 67,
        "percent": 42,
    }
    assert got == want, f"expected {want}, got {got}"


def test_percent_stays_below_100_until_the_record_says_succeeded() -> None:
    rec = record(total=1000, done=1000)
    d = decide(task(), status(Phase.RUNNING), Observed(run_job=run_job(active=1), record=rec), NOW)
    assert d.status.progress and d.status.progress.percent == 99, d.status.progress


def test_runner_record_succeeded_makes_the_task_succeeded_and_frees_its_key() -> None:
    rec = record(RunOutcome.SUCCEEDED, total=10, done=10)
    d = decide(task(), status(Phase.RUNNING), Observed(run_job=run_job(), record=rec), NOW)
    expect(d, Phase.SUCCEEDED, [])
    assert ReleaseKey(KEY) in d.actions, d.actions
    got = (d.status.progress.percent if d.status.progress else None, d.status.finished_at)
    assert got == (100, NOW), got


def test_runner_record_failed_fails_the_task_with_the_runners_message() -> None:
    rec = record(RunOutcome.FAILED, message="line 7: column 'phone' missing")
    d = decide(task(), status(Phase.RUNNING), Observed(run_job=run_job(), record=rec), NOW)
    expect(d, Phase.FAILED, [])
    assert d.status.message == "line 7: column 'phone' missing", d.status.message


def test_failed_job_fails_the_task_with_the_runners_message() -> None:
    job = run_job(failed=True, failure_reason="PodFailurePolicy")
    rec = record(RunOutcome.RUNNING, message="database unreachable")
    d = decide(task(), status(Phase.RUNNING), Observed(run_job=job, record=rec), NOW)
    expect(d, Phase.FAILED, [])
    text = d.status.message or ""
    assert "PodFailurePolicy" in text and "database unreachable" in text, text


def test_complete_job_without_a_succeeded_record_is_a_failure_not_a_success() -> None:
    job = run_job(complete=True)
    d = decide(task(), status(Phase.RUNNING), Observed(run_job=job, record=record()), NOW)
    expect(d, Phase.FAILED, [])


def test_run_job_lost_while_running_is_created_again() -> None:
    d = decide(task(), status(Phase.RUNNING), Observed(record=record()), NOW)
    expect(d, Phase.RUNNING, [CreateRunJob(RUN_JOB)])


def test_run_job_being_deleted_by_someone_is_waited_for_not_duplicated() -> None:
    job = run_job(deleting=True)
    d = decide(task(), status(Phase.RUNNING), Observed(run_job=job, runner_pods=1), NOW)
    expect(d, Phase.RUNNING, [])


# --------------------------------------------------------------------------- pause and resume


def test_pause_suspends_the_job_and_enters_pausing() -> None:
    d = decide(
        task("Paused"),
        status(Phase.RUNNING),
        Observed(run_job=run_job(active=1), runner_pods=1),
        NOW,
    )
    expect(d, Phase.PAUSING, [SuspendJob(RUN_JOB)])


def test_pausing_waits_while_a_runner_pod_is_left() -> None:
    obs = Observed(run_job=run_job(suspended=True), runner_pods=1, record=record())
    d = decide(task("Paused"), status(Phase.PAUSING), obs, NOW)
    expect(d, Phase.PAUSING, [])


def test_paused_once_no_runner_pod_is_left_and_the_record_says_stopped() -> None:
    obs = Observed(run_job=run_job(suspended=True), record=record(RunOutcome.STOPPED, done=500))
    d = decide(task("Paused"), status(Phase.PAUSING), obs, NOW)
    expect(d, Phase.PAUSED, [])
    assert d.status.conditions[1].reason == "StoppedAtCheckpoint", d.status.conditions


def test_paused_even_when_the_runner_was_killed_before_recording_its_stop() -> None:
    obs = Observed(run_job=run_job(suspended=True), record=record(RunOutcome.RUNNING))
    d = decide(task("Paused"), status(Phase.PAUSING), obs, NOW)
    expect(d, Phase.PAUSED, [])
    paused = d.status.condition(ConditionType.PAUSED)
    assert paused and paused.reason == "StoppedWithoutRecord", paused


def test_pause_is_not_a_failure_a_suspended_job_with_a_stopped_record_resumes() -> None:
    obs = Observed(run_job=run_job(suspended=True), record=record(RunOutcome.STOPPED))
    d = decide(task("Running"), status(Phase.PAUSED), obs, NOW)
    expect(d, Phase.RUNNING, [ResumeJob(RUN_JOB)])


def test_resume_while_still_pausing_unsuspends_at_once() -> None:
    obs = Observed(run_job=run_job(suspended=True), runner_pods=1, record=record())
    d = decide(task("Running"), status(Phase.PAUSING), obs, NOW)
    expect(d, Phase.RUNNING, [ResumeJob(RUN_JOB)])


def test_pause_racing_completion_ends_succeeded() -> None:
    obs = Observed(run_job=run_job(suspended=True), record=record(RunOutcome.SUCCEEDED))
    d = decide(task("Paused"), status(Phase.PAUSING), obs, NOW)
    expect(d, Phase.SUCCEEDED, [])


def test_pause_of_a_queued_task_pauses_without_a_job() -> None:
    d = decide(task("Paused"), status(Phase.QUEUED, started=False), Observed(), NOW)
    expect(d, Phase.PAUSED, [])
    paused = d.status.condition(ConditionType.PAUSED)
    assert paused and paused.reason == "PausedBeforeStart", paused


def test_resume_of_a_task_paused_before_start_queues_again_when_the_key_is_held() -> None:
    d = decide(task("Running"), status(Phase.PAUSED, started=False), Observed(), NOW)
    expect(d, Phase.QUEUED, [])


def test_resume_of_a_task_paused_before_start_starts_when_admitted() -> None:
    d = decide(task("Running"), status(Phase.PAUSED, started=False), Observed(admitted=True), NOW)
    expect(d, Phase.RUNNING, [CreateRunJob(RUN_JOB)])


# --------------------------------------------------------------------------- terminate


def test_terminate_deletes_the_run_job_in_the_foreground_and_enters_terminating() -> None:
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record())
    d = decide(task("Terminated"), status(Phase.RUNNING), obs, NOW)
    expect(d, Phase.TERMINATING, [DeleteJob(RUN_JOB, "Foreground")])


def test_terminating_waits_while_a_runner_pod_is_left_without_deleting_again() -> None:
    obs = Observed(run_job=run_job(deleting=True), runner_pods=1, record=record())
    d = decide(task("Terminated"), status(Phase.TERMINATING), obs, NOW)
    expect(d, Phase.TERMINATING, [])


def test_no_runner_pod_left_starts_the_rollback_job() -> None:
    obs = Observed(run_job=run_job(deleting=True), record=record(RunOutcome.STOPPED))
    d = decide(task("Terminated"), status(Phase.TERMINATING), obs, NOW)
    expect(d, Phase.ROLLING_BACK, [CreateRollbackJob(ROLLBACK_JOB)])
    assert d.status.rollback_job_name == ROLLBACK_JOB, d.status.rollback_job_name


def test_terminate_with_keep_ends_terminated_without_a_rollback_job() -> None:
    obs = Observed(record=record(RunOutcome.STOPPED))
    d = decide(task("Terminated", "Keep"), status(Phase.TERMINATING), obs, NOW)
    expect(d, Phase.TERMINATED, [])
    assert ReleaseKey(KEY) in d.actions, d.actions


def test_rolling_back_reports_rollback_progress() -> None:
    rec = record(
        RunOutcome.STOPPED,
        rollback_status=RollbackOutcome.RUNNING,
        rollback_total=90,
        rollback_done=30,
    )
    obs = Observed(rollback_job=rollback_job(active=1), runner_pods=1, record=rec)
    d = decide(task("Terminated"), status(Phase.ROLLING_BACK), obs, NOW)
    expect(d, Phase.ROLLING_BACK, [])
    rb = d.status.rollback
    assert rb is not None and (rb.total, rb.done) == (90, 30), rb


def test_rollback_recorded_succeeded_ends_rolled_back_and_frees_the_key() -> None:
    rec = record(RunOutcome.STOPPED, rollback_status=RollbackOutcome.SUCCEEDED, rollback_done=90)
    obs = Observed(rollback_job=rollback_job(complete=True), record=rec)
    d = decide(task("Terminated"), status(Phase.ROLLING_BACK), obs, NOW)
    expect(d, Phase.ROLLED_BACK, [])
    rolled_back = d.status.condition(ConditionType.ROLLED_BACK)
    assert rolled_back and rolled_back.status == "True", rolled_back
    assert ReleaseKey(KEY) in d.actions, d.actions


def test_rollback_conflicts_are_reported_with_a_warning() -> None:
    rec = record(
        RunOutcome.STOPPED,
        rollback_status=RollbackOutcome.SUCCEEDED,
        rollback_done=88,
        rollback_conflicts=2,
    )
    d = decide(task("Terminated"), status(Phase.ROLLING_BACK), Observed(record=rec), NOW)
    assert "2 rows" in (d.status.message or ""), d.status.message
    assert [e.type for e in events(d)] == ["Warning"], events(d)


def test_rollback_failure_fails_the_task_and_says_rolled_back_false() -> None:
    rec = record(
        RunOutcome.STOPPED,
        rollback_status=RollbackOutcome.FAILED,
        rollback_message="undo journal row 12 missing",
    )
    d = decide(task("Terminated"), status(Phase.ROLLING_BACK), Observed(record=rec), NOW)
    expect(d, Phase.FAILED, [])
    rolled_back = d.status.condition(ConditionType.ROLLED_BACK)
    assert rolled_back and (rolled_back.status, rolled_back.reason) == ("False", "RollbackFailed")


def test_rollback_job_lost_is_created_again_under_the_same_name() -> None:
    rec = record(RunOutcome.STOPPED, rollback_status=RollbackOutcome.STOPPED)
    d = decide(task("Terminated"), status(Phase.ROLLING_BACK), Observed(record=rec), NOW)
    expect(d, Phase.ROLLING_BACK, [CreateRollbackJob(ROLLBACK_JOB)])


# --------------------------------------------------------------------------- the races


def run_machine(
    t: Task, start: TaskStatus, observations: list[Observed]
) -> tuple[TaskStatus, list[Decision]]:
    """Feed each decision's status into the next reconcile, one observation at a time."""
    current, decisions = start, []
    for i, obs in enumerate(observations):
        d = decide(t, current, obs, NOW + dt.timedelta(seconds=i))
        decisions.append(d)
        current = d.status
    return current, decisions


def all_work(decisions: list[Decision]) -> list[Action]:
    return [a for d in decisions for a in work(d)]


def test_double_terminate_makes_one_delete_and_one_rollback_job() -> None:
    """Terminated set twice (two clients) is one request: the reconciles repeat, nothing more."""
    stopping = Observed(run_job=run_job(deleting=True), runner_pods=1, record=record())
    gone = Observed(record=record(RunOutcome.STOPPED))
    rolling = Observed(
        rollback_job=rollback_job(active=1),
        runner_pods=1,
        record=record(RunOutcome.STOPPED, rollback_status=RollbackOutcome.RUNNING),
    )
    observations = [
        Observed(run_job=run_job(active=1), runner_pods=1, record=record()),
        stopping,
        stopping,
        gone,
        rolling,
        rolling,
    ]
    final, decisions = run_machine(task("Terminated"), status(Phase.RUNNING), observations)
    assert all_work(decisions) == [
        DeleteJob(RUN_JOB, "Foreground"),
        CreateRollbackJob(ROLLBACK_JOB),
    ], all_work(decisions)
    assert final.phase is Phase.ROLLING_BACK, final.phase


def test_terminate_while_pausing_deletes_the_job_and_rolls_back_once() -> None:
    observations = [
        Observed(run_job=run_job(suspended=True), runner_pods=1, record=record()),
        Observed(run_job=run_job(suspended=True, deleting=True), record=record(RunOutcome.STOPPED)),
        Observed(
            rollback_job=rollback_job(active=1), runner_pods=1, record=record(RunOutcome.STOPPED)
        ),
    ]
    _, decisions = run_machine(task("Terminated"), status(Phase.PAUSING), observations)
    phases = [d.status.phase for d in decisions]
    assert phases == [Phase.TERMINATING, Phase.ROLLING_BACK, Phase.ROLLING_BACK], phases
    assert all_work(decisions) == [
        DeleteJob(RUN_JOB, "Foreground"),
        CreateRollbackJob(ROLLBACK_JOB),
    ], all_work(decisions)


def test_terminate_of_a_paused_task_deletes_its_job_then_rolls_back() -> None:
    observations = [
        Observed(run_job=run_job(suspended=True), record=record(RunOutcome.STOPPED)),
        Observed(run_job=run_job(suspended=True, deleting=True), record=record(RunOutcome.STOPPED)),
    ]
    _, decisions = run_machine(task("Terminated"), status(Phase.PAUSED), observations)
    got = [outcome(d) for d in decisions]
    assert got == [
        (Phase.TERMINATING, [DeleteJob(RUN_JOB, "Foreground")]),
        (Phase.ROLLING_BACK, [CreateRollbackJob(ROLLBACK_JOB)]),
    ], got


@pytest.mark.parametrize(
    ("on_terminate", "phase", "reason"),
    [
        ("Rollback", Phase.ROLLED_BACK, "NothingWritten"),
        ("Keep", Phase.TERMINATED, "TerminatedBeforeStart"),
    ],
)
def test_terminate_of_a_queued_task_ends_at_once_without_a_rollback_job(
    on_terminate: str, phase: Phase, reason: str
) -> None:
    d = decide(
        task("Terminated", on_terminate), status(Phase.QUEUED, started=False), Observed(), NOW
    )
    expect(d, phase, [])
    succeeded = d.status.condition(ConditionType.SUCCEEDED)
    assert succeeded and succeeded.reason == reason, succeeded


def test_terminate_of_a_task_paused_before_start_ends_at_once() -> None:
    d = decide(task("Terminated"), status(Phase.PAUSED, started=False), Observed(), NOW)
    expect(d, Phase.ROLLED_BACK, [])


def test_terminate_racing_completion_keeps_the_completed_task() -> None:
    """The record says succeeded when the terminate is first seen: no delete, no rollback."""
    obs = Observed(run_job=run_job(complete=True), record=record(RunOutcome.SUCCEEDED, done=10))
    d = decide(task("Terminated"), status(Phase.RUNNING), obs, NOW)
    expect(d, Phase.SUCCEEDED, [])
    succeeded = d.status.condition(ConditionType.SUCCEEDED)
    assert succeeded and succeeded.reason == "CompletedBeforeTerminate", succeeded


def test_completion_during_terminating_wins_over_the_rollback() -> None:
    """The runner committed its last chunk before the SIGTERM: the task is complete."""
    obs = Observed(record=record(RunOutcome.SUCCEEDED, done=10))
    d = decide(task("Terminated"), status(Phase.TERMINATING), obs, NOW)
    expect(d, Phase.SUCCEEDED, [])


def test_failure_racing_a_terminate_still_rolls_back_the_partial_writes() -> None:
    observations = [
        Observed(run_job=run_job(failed=True), record=record(RunOutcome.FAILED)),
        Observed(run_job=run_job(failed=True, deleting=True), record=record(RunOutcome.FAILED)),
    ]
    _, decisions = run_machine(task("Terminated"), status(Phase.RUNNING), observations)
    got = [outcome(d) for d in decisions]
    assert got == [
        (Phase.TERMINATING, [DeleteJob(RUN_JOB, "Foreground")]),
        (Phase.ROLLING_BACK, [CreateRollbackJob(ROLLBACK_JOB)]),
    ], got


def test_late_terminate_of_a_succeeded_task_is_ignored_and_said() -> None:
    before = status(Phase.SUCCEEDED, message="completed: 10 rows", finished_at=EARLIER)
    d = decide(task("Terminated"), before, Observed(record=record(RunOutcome.SUCCEEDED)), NOW)
    expect(d, Phase.SUCCEEDED, [])
    reasons = [e.reason for e in events(d)]
    assert reasons == ["ActionIgnored"], reasons
    assert "ignored" in (d.status.message or ""), d.status.message


def test_resume_after_terminate_is_ignored_and_the_rollback_goes_on() -> None:
    """The CRD refuses it; should it get through (older CRD), the operator still refuses."""
    before = status(
        Phase.TERMINATING,
        last_action={"state": "Terminated", "at": EARLIER},
    )
    d = decide(task("Running"), before, Observed(record=record(RunOutcome.STOPPED)), NOW)
    expect(d, Phase.ROLLING_BACK, [CreateRollbackJob(ROLLBACK_JOB)])
    assert "ActionIgnored" in [e.reason for e in events(d)], events(d)


def test_control_request_on_a_failed_task_is_ignored() -> None:
    d = decide(task("Paused"), status(Phase.FAILED), Observed(), NOW)
    expect(d, Phase.FAILED, [])
    assert [e.reason for e in events(d)] == ["ActionIgnored"], events(d)


def test_final_task_reconciled_again_does_nothing() -> None:
    before = status(Phase.SUCCEEDED, last_action=None)
    d = decide(task(), before, Observed(record=record(RunOutcome.SUCCEEDED)), NOW)
    assert d.actions == (), d.actions


# --------------------------------------------------------------------------- events, conditions


def test_every_phase_transition_posts_one_event() -> None:
    observations = [
        Observed(admitted=True),
        Observed(run_job=run_job(active=1), runner_pods=1, record=record()),
        Observed(run_job=run_job(active=1), runner_pods=1, record=record(done=5)),
        Observed(run_job=run_job(), record=record(RunOutcome.SUCCEEDED, done=10)),
    ]
    _, decisions = run_machine(task(), TaskStatus(), observations)
    got = [[e.reason for e in events(d)] for d in decisions]
    assert got == [["Started"], [], [], ["Completed"]], got


def test_event_names_who_asked_and_why() -> None:
    t = task("Paused", requested_by="support@acme", reason="wrong file")
    obs = Observed(run_job=run_job(active=1), runner_pods=1)
    (event,) = events(decide(t, status(Phase.RUNNING), obs, NOW))
    assert "requested by support@acme: wrong file" in event.message, event.message


def test_last_action_records_the_request_and_its_requester() -> None:
    t = task("Terminated", requested_by="pipeline", reason="wrong date range")
    d = decide(t, status(Phase.RUNNING), Observed(run_job=run_job(active=1), runner_pods=1), NOW)
    la = d.status.last_action
    got = (la.state, la.requested_by, la.reason, la.at) if la else None
    assert got == (DesiredState.TERMINATED, "pipeline", "wrong date range", NOW), got


def test_repeated_request_keeps_the_first_sighting() -> None:
    before = status(Phase.PAUSING, last_action={"state": "Paused", "at": EARLIER})
    obs = Observed(run_job=run_job(suspended=True), runner_pods=1)
    d = decide(task("Paused", requested_by="someone-else"), before, obs, NOW)
    la = d.status.last_action
    assert la is not None and la.at == EARLIER and la.requested_by is None, la


def test_observed_generation_is_set_on_status_and_conditions() -> None:
    d = decide(task(generation=7), status(Phase.RUNNING), Observed(run_job=run_job()), NOW)
    got = {d.status.observed_generation} | {c.observed_generation for c in d.status.conditions}
    assert got == {7}, got


def test_condition_transition_time_is_kept_while_its_status_holds() -> None:
    obs = Observed(run_job=run_job(active=1), runner_pods=1)
    first = decide(task(), status(Phase.RUNNING), obs, EARLIER)
    second = decide(task(), first.status, obs, NOW)
    got = [(c.type, c.last_transition_time) for c in second.status.conditions]
    assert all(t == EARLIER for _, t in got), got


@pytest.mark.parametrize(
    ("phase", "want"),
    [
        (Phase.RUNNING, {"Progressing": "True", "Paused": "False", "Succeeded": "Unknown"}),
        (Phase.PAUSED, {"Progressing": "False", "Paused": "True", "Succeeded": "Unknown"}),
        (Phase.QUEUED, {"Progressing": "False", "Paused": "False", "Succeeded": "Unknown"}),
    ],
)
def test_conditions_answer_what_a_person_asks(phase: Phase, want: dict[str, str]) -> None:
    cases = {
        Phase.RUNNING: (task(), status(Phase.RUNNING), Observed(run_job=run_job(active=1))),
        Phase.PAUSED: (
            task("Paused"),
            status(Phase.PAUSING),
            Observed(run_job=run_job(suspended=True)),
        ),
        Phase.QUEUED: (task(), TaskStatus(), Observed()),
    }
    d = decide(*cases[phase], NOW)
    got = {c.type.value: c.status for c in d.status.conditions}
    assert (d.status.phase, got) == (phase, want), (d.status.phase, got)


# --------------------------------------------------------------------------- time accounting


def test_running_seconds_accrue_while_running() -> None:
    before = status(Phase.RUNNING, running_seconds=100)
    d = decide(task(), before, Observed(run_job=run_job(active=1)), NOW)
    assert (d.status.running_seconds, d.status.accounted_at) == (700, NOW)


def test_paused_seconds_accrue_while_paused() -> None:
    before = status(Phase.PAUSED, paused_seconds=5)
    d = decide(task("Paused"), before, Observed(run_job=run_job(suspended=True)), NOW)
    assert (d.status.paused_seconds, d.status.running_seconds) == (605, 0)


def test_time_queued_or_paused_before_start_counts_as_neither() -> None:
    before = status(Phase.PAUSED, started=False)
    d = decide(task("Paused"), before, Observed(), NOW)
    assert (d.status.paused_seconds, d.status.running_seconds) == (0, 0)


def test_final_phase_stops_the_clocks() -> None:
    before = status(Phase.SUCCEEDED, running_seconds=42, accounted_at=EARLIER)
    d = decide(task(), before, Observed(), NOW)
    assert (d.status.running_seconds, d.status.accounted_at) == (42, EARLIER)


def test_times_are_whole_seconds_in_utc() -> None:
    odd = dt.datetime(
        2026, 11, 30, 13, 30, 0, 987654, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
    )
    d = decide(task(), TaskStatus(), Observed(admitted=True), odd)
    assert d.status.started_at == NOW, d.status.started_at


# --------------------------------------------------------------------------- every phase × state


def _plausible(phase: Phase) -> tuple[TaskStatus, Observed]:
    """A status and an observation a task in ``phase`` could really have."""
    started = phase not in (Phase.PENDING, Phase.QUEUED)
    job = {
        Phase.RUNNING: run_job(active=1),
        Phase.PAUSING: run_job(suspended=True),
        Phase.PAUSED: run_job(suspended=True),
        Phase.TERMINATING: run_job(deleting=True),
    }.get(phase)
    pods = 1 if phase in (Phase.RUNNING, Phase.PAUSING, Phase.TERMINATING) else 0
    rec = record(RunOutcome.RUNNING if pods else RunOutcome.STOPPED) if started else None
    st = status(None if phase is Phase.PENDING else phase, started=started)
    return st, Observed(run_job=job, runner_pods=pods, record=rec, admitted=True)


EVERY_PHASE_AND_STATE = pytest.mark.parametrize(
    ("phase", "state"),
    list(itertools.product(list(Phase), list(DesiredState))),
    ids=lambda v: str(v),
)


@EVERY_PHASE_AND_STATE
def test_every_phase_and_state_gives_a_well_formed_decision(
    phase: Phase, state: DesiredState
) -> None:
    st, obs = _plausible(phase)
    d = decide(task(state.value), st, obs, NOW)
    new = d.status.phase
    assert new is not None, "a decision always sets a phase"
    if phase.is_final:
        assert new is phase and work(d) == [], f"final {phase} changed: {new}, {work(d)}"
    if state is not DesiredState.TERMINATED and phase not in (
        Phase.TERMINATING,
        Phase.ROLLING_BACK,
    ):
        assert not any(isinstance(a, CreateRollbackJob | DeleteJob) for a in work(d)), work(d)
    if new is not phase:
        assert len(events(d)) >= 1, f"{phase} -> {new} posted no event"
    assert new is not Phase.FAILED or phase is Phase.FAILED, (
        f"{phase} with {state} failed with nothing failing: {d.status.message}"
    )


# --------------------------------------------------------------------------- deletion


def test_deleting_a_running_task_deletes_its_job_and_waits_for_the_pod() -> None:
    obs = Observed(run_job=run_job(active=1), runner_pods=1)
    cleanup = decide_deletion(task(), status(Phase.RUNNING), obs)
    got = (cleanup.actions, cleanup.done)
    assert got == ((DeleteJob(RUN_JOB, "Foreground"),), False), got


def test_deletion_is_done_once_no_pod_and_no_job_is_left() -> None:
    cleanup = decide_deletion(task(), status(Phase.PAUSED), Observed())
    assert (cleanup.actions, cleanup.done) == ((ReleaseKey(KEY),), True), cleanup


def test_deletion_waits_for_a_job_still_being_deleted() -> None:
    cleanup = decide_deletion(
        task(), status(Phase.PAUSED), Observed(run_job=run_job(deleting=True))
    )
    assert (cleanup.actions, cleanup.done) == ((), False), cleanup


def test_deleting_during_rollback_warns_that_the_rollback_is_cut_short() -> None:
    rec = record(RunOutcome.STOPPED, rollback_status=RollbackOutcome.RUNNING, rollback_done=30)
    obs = Observed(rollback_job=rollback_job(active=1), runner_pods=1, record=rec)
    cleanup = decide_deletion(task("Terminated"), status(Phase.ROLLING_BACK), obs)
    warnings = [a for a in cleanup.actions if isinstance(a, PostEvent) and a.type == "Warning"]
    assert len(warnings) == 1 and "30 rows undone" in warnings[0].message, cleanup.actions


# --------------------------------------------------------------------------- the hold
# A pause or terminate takes effect when the runner's record holds the run: from then on no
# chunk commits, whatever the pod does. The hold comes before the Job action that stops the
# pod, and a release before the one that starts one.


def test_a_pause_takes_effect_by_the_hold_before_the_job_is_suspended() -> None:
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record(done=40))
    d = decide(task("Paused"), status(Phase.RUNNING), obs, NOW)
    assert holds(d) == [HoldRun("Paused"), SuspendJob(RUN_JOB)], d.actions


def test_a_pause_in_progress_holds_nothing_again() -> None:
    obs = Observed(run_job=run_job(suspended=True), runner_pods=1, record=record())
    d = decide(task("Paused"), status(Phase.PAUSING), obs, NOW)
    assert holds(d) == [], d.actions


def test_a_pause_before_the_start_holds_nothing_as_no_runner_exists() -> None:
    d = decide(task("Paused"), status(Phase.QUEUED, started=False), Observed(), NOW)
    assert (d.status.phase, holds(d)) == (Phase.PAUSED, []), d.actions


def test_a_resume_releases_the_hold_before_the_job_is_resumed() -> None:
    obs = Observed(run_job=run_job(suspended=True), record=record(RunOutcome.STOPPED))
    d = decide(task("Running"), status(Phase.PAUSED), obs, NOW)
    assert holds(d) == [ReleaseRun(), ResumeJob(RUN_JOB)], d.actions


def test_a_start_releases_any_hold_before_the_job_is_created() -> None:
    d = decide(task(), TaskStatus(), Observed(admitted=True), NOW)
    assert holds(d) == [ReleaseRun(), CreateRunJob(RUN_JOB, suspend=False)], d.actions


def test_a_lost_job_made_again_is_released_first() -> None:
    d = decide(task(), status(Phase.RUNNING), Observed(record=record()), NOW)
    assert holds(d) == [ReleaseRun(), CreateRunJob(RUN_JOB, suspend=False)], d.actions


def test_a_terminate_takes_effect_by_the_hold_before_the_job_is_deleted() -> None:
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record())
    d = decide(task("Terminated"), status(Phase.RUNNING), obs, NOW)
    assert holds(d) == [HoldRun("Terminated"), DeleteJob(RUN_JOB, "Foreground")], d.actions


def test_a_terminate_of_a_paused_task_turns_its_hold_into_terminated() -> None:
    obs = Observed(run_job=run_job(suspended=True), record=record(RunOutcome.STOPPED))
    d = decide(task("Terminated"), status(Phase.PAUSED), obs, NOW)
    assert holds(d) == [HoldRun("Terminated"), DeleteJob(RUN_JOB, "Foreground")], d.actions


def test_deleting_a_terminated_task_holds_its_run_before_deleting_its_jobs() -> None:
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record())
    cleanup = decide_deletion(task("Terminated"), status(Phase.TERMINATING), obs)
    assert cleanup.actions[:2] == (HoldRun("Terminated"), DeleteJob(RUN_JOB, "Foreground"))


@EVERY_PHASE_AND_STATE
def test_every_job_action_that_stops_or_starts_a_run_is_guarded_by_the_hold(
    phase: Phase, state: DesiredState
) -> None:
    st, obs = _plausible(phase)
    d = decide(task(state.value), st, obs, NOW)
    acts = list(d.actions)
    for i, action in enumerate(acts):
        before = acts[i - 1] if i else None
        if isinstance(action, SuspendJob):
            assert before == HoldRun("Paused"), acts
        elif isinstance(action, DeleteJob) and state is DesiredState.TERMINATED:
            assert before == HoldRun("Terminated"), acts
        elif isinstance(action, ResumeJob | CreateRunJob):
            assert before == ReleaseRun(), acts
        if isinstance(action, HoldRun | ReleaseRun):
            after = acts[i + 1] if i + 1 < len(acts) else None
            assert isinstance(after, SuspendJob | DeleteJob | ResumeJob | CreateRunJob), acts


# ----------------------------------------------------------------------------- the throttle


def test_a_rate_limit_changed_on_a_running_task_is_written_to_its_record_and_said() -> None:
    t = task(rate_limit=20, requested_by="support@acme", reason="the database is busy")
    before = status(Phase.RUNNING, rate_limit=100)
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record(rate_limit=100.0))
    d = decide(t, before, obs, NOW)
    expect(d, Phase.RUNNING, [SetRateLimit(20)])
    (event,) = events(d)
    assert event.reason == "RateLimitChanged", event
    assert "100 rows/s -> 20 rows/s" in event.message, event.message
    assert "requested by support@acme: the database is busy" in event.message, event.message
    la = d.status.last_action
    got = (la.state, la.rate_limit, la.changed, la.requested_by, la.at) if la else None
    assert got == (DesiredState.RUNNING, 20, ("rateLimit",), "support@acme", NOW), got
    assert d.status.rate_limit == 20


def test_removing_the_rate_limit_writes_unlimited() -> None:
    before = status(Phase.RUNNING, rate_limit=100)
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record(rate_limit=100.0))
    d = decide(task(), before, obs, NOW)
    expect(d, Phase.RUNNING, [SetRateLimit(None)])
    assert "100 rows/s -> unlimited" in events(d)[0].message, events(d)
    assert d.status.rate_limit is None


def test_a_rate_limit_already_in_the_record_is_not_written_or_said_again() -> None:
    before = status(Phase.RUNNING, rate_limit=20,
                    last_action={"state": "Running", "rateLimit": 20, "changed": ["rateLimit"],
                                 "at": EARLIER})
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record(rate_limit=20.0))
    d = decide(task(rate_limit=20), before, obs, NOW)
    expect(d, Phase.RUNNING, [])
    assert events(d) == [] and d.status.last_action == before.last_action, d


def test_a_record_that_differs_from_the_spec_is_put_right_without_a_new_request() -> None:
    """A runner registering from a Job made with an older limit: written again, no Event."""
    before = status(Phase.RUNNING, rate_limit=20)
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record(rate_limit=100.0))
    d = decide(task(rate_limit=20), before, obs, NOW)
    expect(d, Phase.RUNNING, [SetRateLimit(20)])
    assert events(d) == [] and d.status.last_action is None, d


def test_the_first_reconcile_takes_the_creation_limit_as_seen_not_as_a_request() -> None:
    d = decide(task(rate_limit=50), TaskStatus(), Observed(admitted=True), NOW)
    assert [e.reason for e in events(d)] == ["Started"], events(d)
    assert d.status.rate_limit == 50 and d.status.last_action is None, d.status


def test_a_throttle_of_a_task_without_a_record_writes_nothing_yet() -> None:
    """Queued: its Job is made later, with the spec's limit of then."""
    before = status(Phase.QUEUED, started=False, rate_limit=100)
    d = decide(task(rate_limit=10), before, Observed(admitted=False), NOW)
    expect(d, Phase.QUEUED, [])
    assert [e.reason for e in events(d)] == ["RateLimitChanged"], events(d)


def test_a_throttle_with_a_pause_keeps_the_hold_right_before_the_suspend() -> None:
    before = status(Phase.RUNNING, rate_limit=100)
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record(rate_limit=100.0))
    d = decide(task("Paused", rate_limit=5), before, obs, NOW)
    assert holds(d) == [HoldRun("Paused"), SuspendJob(RUN_JOB)], d.actions
    assert d.actions[0] == SetRateLimit(5), d.actions
    la = d.status.last_action
    assert la is not None and la.changed == ("state", "rateLimit"), la


def test_a_throttle_while_rolling_back_is_written_the_rollback_keeps_to_it_too() -> None:
    before = status(Phase.ROLLING_BACK, rate_limit=None,
                    last_action={"state": "Terminated", "at": EARLIER})
    obs = Observed(rollback_job=rollback_job(active=1), runner_pods=1,
                   record=record(RunOutcome.STOPPED, rollback_status=RollbackOutcome.RUNNING))
    d = decide(task("Terminated", rate_limit=30), before, obs, NOW)
    expect(d, Phase.ROLLING_BACK, [SetRateLimit(30)])


def test_a_throttle_of_an_ended_task_is_ignored_and_said() -> None:
    before = status(Phase.SUCCEEDED, rate_limit=100, finished_at=EARLIER)
    d = decide(task(rate_limit=10), before,
               Observed(record=record(RunOutcome.SUCCEEDED, rate_limit=100.0)), NOW)
    expect(d, Phase.SUCCEEDED, [])
    (event,) = events(d)
    assert event.reason == "ActionIgnored" and "rateLimit 10 rows/s ignored" in event.message
    assert d.status.rate_limit == 10, "seen, so the next reconcile does not say it again"


def test_a_state_and_a_throttle_on_an_ended_task_make_one_ignored_event() -> None:
    before = status(Phase.FAILED, rate_limit=100)
    d = decide(task("Paused", rate_limit=10), before, Observed(), NOW)
    (event,) = events(d)
    assert "spec.state Paused ignored" in event.message, event.message
    assert "spec.rateLimit 10 rows/s ignored" in event.message, event.message


# ---------------------------------------------------------------- bounded and scheduled pauses


def patches(decision: Decision) -> list[PatchSpec]:
    return [a for a in decision.actions if isinstance(a, PatchSpec)]


PAUSED_OBS = Observed(run_job=run_job(suspended=True), record=record(RunOutcome.STOPPED))


def test_a_pause_with_resume_at_shows_when_it_ends_and_asks_to_be_woken_then() -> None:
    at = NOW + dt.timedelta(minutes=5)
    d = decide(task("Paused", resumeAt=at.isoformat()), status(Phase.PAUSED), PAUSED_OBS, NOW)
    assert (d.status.pause_ends_at, d.wake_at) == (at, at), d
    assert d.status.pause_requested_at == NOW and patches(d) == [], d


def test_resume_at_reached_resumes_the_task_as_the_operator_with_an_event() -> None:
    at = NOW - dt.timedelta(seconds=1)
    before = status(Phase.PAUSED, pause_requested_at=EARLIER)
    d = decide(task("Paused", resumeAt=at.isoformat()), before, PAUSED_OBS, NOW)
    (change,) = patches(d)
    assert change.body() == {
        "spec": {"state": "Running", "resumeAt": None},
        "metadata": {"annotations": {"collect.atlan.com/requested-by": "longtask-operator",
                                     "collect.atlan.com/reason": "resumeAt 2026-11-30T07:59:59Z"}},
    }, change.body()
    assert [e.reason for e in events(d)] == ["ScheduledResume"], events(d)


def test_max_pause_counts_from_when_the_pause_was_first_seen() -> None:
    first = decide(task("Paused", maxPauseSeconds=60), status(Phase.RUNNING),
                   Observed(run_job=run_job(active=1), runner_pods=1), NOW)
    assert first.status.pause_requested_at == NOW
    assert first.status.pause_ends_at == NOW + dt.timedelta(seconds=60)
    later = NOW + dt.timedelta(seconds=30)
    again = decide(task("Paused", maxPauseSeconds=60), first.status, PAUSED_OBS, later)
    assert again.status.pause_ends_at == NOW + dt.timedelta(seconds=60), again.status
    assert patches(again) == []


def test_max_pause_reached_resumes_under_on_max_pause_resume() -> None:
    before = status(Phase.PAUSED, pause_requested_at=NOW - dt.timedelta(seconds=61))
    d = decide(task("Paused", maxPauseSeconds=60), before, PAUSED_OBS, NOW)
    (change,) = patches(d)
    assert dict(change.spec) == {"state": "Running", "resumeAt": None}, change
    assert change.reason == "maxPauseSeconds 60 reached"
    (event,) = events(d)
    assert (event.type, event.reason) == ("Normal", "MaxPauseReached"), event
    assert "paused 61 s" in event.message and "resumed" in event.message, event.message


def test_max_pause_reached_terminates_under_on_max_pause_terminate() -> None:
    before = status(Phase.PAUSED, pause_requested_at=NOW - dt.timedelta(seconds=60))
    d = decide(task("Paused", maxPauseSeconds=60, onMaxPause="Terminate"), before,
               PAUSED_OBS, NOW)
    (change,) = patches(d)
    assert dict(change.spec) == {"state": "Terminated", "resumeAt": None}, change
    (event,) = events(d)
    assert (event.type, event.reason) == ("Warning", "MaxPauseReached"), event
    assert "terminated (onTerminate Rollback)" in event.message, event.message


def test_the_earlier_bound_ends_the_pause() -> None:
    before = status(Phase.PAUSED, pause_requested_at=NOW - dt.timedelta(seconds=10))
    d = decide(task("Paused", maxPauseSeconds=20, onMaxPause="Terminate",
                    resumeAt=(NOW + dt.timedelta(seconds=60)).isoformat()), before,
               PAUSED_OBS, NOW)
    assert d.status.pause_ends_at == NOW + dt.timedelta(seconds=10), d.status
    assert d.wake_at == NOW + dt.timedelta(seconds=10)


def test_a_pause_before_the_start_is_bounded_too_and_queues_again() -> None:
    before = status(Phase.PAUSED, started=False, pause_requested_at=EARLIER)
    d = decide(task("Paused", maxPauseSeconds=60), before, Observed(), NOW)
    assert dict(patches(d)[0].spec)["state"] == "Running", d.actions


def test_a_plain_resume_removes_a_stale_resume_at_and_ends_the_bound() -> None:
    """kubectl patch spec.state Running, resumeAt left behind: removed, credited to nobody."""
    before = status(Phase.PAUSED, pause_requested_at=EARLIER,
                    pause_ends_at=NOW + dt.timedelta(hours=1),
                    last_action={"state": "Paused", "at": EARLIER})
    at = (NOW + dt.timedelta(hours=1)).isoformat()
    d = decide(task("Running", resumeAt=at), before, PAUSED_OBS, NOW)
    assert patches(d) == [PatchSpec((("resumeAt", None),))], d.actions
    assert patches(d)[0].body() == {"spec": {"resumeAt": None}}
    assert (d.status.pause_requested_at, d.status.pause_ends_at) == (None, None), d.status
    assert ResumeJob(RUN_JOB) in d.actions


def test_a_pause_without_bounds_has_no_end_and_no_wake() -> None:
    d = decide(task("Paused"), status(Phase.PAUSED), PAUSED_OBS, NOW)
    assert (d.status.pause_ends_at, d.wake_at, patches(d)) == (None, None, []), d


def test_max_running_seconds_counts_running_time_only_and_wakes_at_the_bound() -> None:
    before = status(Phase.RUNNING, running_seconds=40, paused_seconds=500,
                    accounted_at=NOW - dt.timedelta(seconds=5))
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record())
    d = decide(task(maxRunningSeconds=60), before, obs, NOW)
    assert d.status.running_seconds == 45 and patches(d) == [], d.status
    assert d.wake_at == NOW + dt.timedelta(seconds=15)


def test_max_running_seconds_reached_terminates_with_the_tasks_policy() -> None:
    before = status(Phase.RUNNING, running_seconds=59, accounted_at=NOW - dt.timedelta(seconds=1))
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record())
    d = decide(task(maxRunningSeconds=60), before, obs, NOW)
    (change,) = patches(d)
    assert change.body()["spec"] == {"state": "Terminated", "resumeAt": None}, change
    assert change.reason == "maxRunningSeconds 60 reached"
    (event,) = events(d)
    assert (event.type, event.reason) == ("Warning", "MaxRunningReached"), event
    assert "paused time not counted" in event.message


def test_paused_time_does_not_bring_max_running_seconds_nearer() -> None:
    before = status(Phase.PAUSED, running_seconds=30, accounted_at=EARLIER)
    d = decide(task("Paused", maxRunningSeconds=60), before, PAUSED_OBS, NOW)
    assert d.status.running_seconds == 30 and patches(d) == [] and d.wake_at is None, d


def test_terminating_and_final_tasks_have_no_bounds() -> None:
    past = (NOW - dt.timedelta(hours=1)).isoformat()
    terminating = decide(task("Terminated", maxRunningSeconds=1, resumeAt=past),
                         status(Phase.TERMINATING, running_seconds=99),
                         Observed(run_job=run_job(deleting=True), runner_pods=1), NOW)
    final = decide(task("Paused", maxPauseSeconds=1),
                   status(Phase.FAILED, pause_requested_at=EARLIER), Observed(), NOW)
    assert patches(terminating) == [] and terminating.wake_at is None, terminating
    assert patches(final) == [] and final.wake_at is None, final


def test_a_status_from_before_the_throttle_existed_is_not_a_throttle_request() -> None:
    """An operator upgraded under a running task: the spec did not change (same generation),
    status.rateLimit is simply not there yet; the record is already right."""
    before = status(Phase.RUNNING, observed_generation=3)
    obs = Observed(run_job=run_job(active=1), runner_pods=1, record=record(rate_limit=100.0))
    d = decide(task(rate_limit=100, generation=3), before, obs, NOW)
    expect(d, Phase.RUNNING, [])
    assert events(d) == [] and d.status.last_action is None and d.status.rate_limit == 100
