"""Pure rules of the API, without servers: control transitions, token documents, settings."""

from __future__ import annotations

import pytest
from longtask.api import control
from longtask.api.auth import Role, TokenConfigError, hash_token, parse_tokens
from longtask.api.settings import PLACEHOLDER_HASHES, ApiSettings
from pydantic import ValidationError

from longtask.phases import DesiredState, OnTerminate, Phase, RollbackOutcome, RunOutcome
from longtask.taskrecord import RunnerRecord

R, P, T = DesiredState.RUNNING, DesiredState.PAUSED, DesiredState.TERMINATED


@pytest.mark.parametrize(("state", "phase", "target", "patch"), [
    (R, Phase.RUNNING, P, {"state": "Paused"}),
    (P, Phase.PAUSED, R, {"state": "Running"}),
    (R, Phase.QUEUED, T, {"state": "Terminated"}),
    (P, Phase.PAUSING, T, {"state": "Terminated"}),
    (R, Phase.PENDING, R, {}),
    (P, Phase.PAUSED, P, {}),
    (T, Phase.ROLLING_BACK, T, {}),
    (T, Phase.ROLLED_BACK, T, {}),
])
def test_allowed_requests_patch_only_what_changes(
        state: DesiredState, phase: Phase, target: DesiredState, patch: dict[str, str]) -> None:
    decision = control.decide({"state": state}, phase, target)

    assert decision.refusal is None
    assert decision.patch == patch


@pytest.mark.parametrize(("spec", "phase", "limit", "patch"), [
    ({"state": "Running", "rateLimit": 100}, Phase.RUNNING, 20, {"rateLimit": 20}),
    ({"state": "Running", "rateLimit": 100}, Phase.RUNNING, None, {"rateLimit": None}),
    ({"state": "Running"}, Phase.QUEUED, 50, {"rateLimit": 50}),
    ({"state": "Paused"}, Phase.PAUSED, 50, {"rateLimit": 50}),
    ({"state": "Terminated"}, Phase.ROLLING_BACK, 50, {"rateLimit": 50}),
    ({"state": "Running", "rateLimit": 20}, Phase.RUNNING, 20, {}),
    ({"state": "Running"}, Phase.RUNNING, None, {}),
])
def test_the_rate_limit_changes_in_every_phase_not_final(
        spec: dict[str, object], phase: Phase, limit: int | None,
        patch: dict[str, object]) -> None:
    decision = control.decide(spec, phase, None, None, limit)

    assert decision.refusal is None
    assert decision.patch == patch


def test_a_resume_removes_a_resume_at_and_a_pause_takes_one() -> None:
    resume = control.decide({"state": "Paused", "resumeAt": "2099-01-01T00:00:00Z"},
                            Phase.PAUSED, R)
    pause = control.decide({"state": "Running"}, Phase.RUNNING, P,
                           bounds={"resumeAt": "2099-01-01T00:00:00Z", "maxPauseSeconds": 60})

    assert resume.patch == {"state": "Running", "resumeAt": None}, resume
    assert pause.patch == {"state": "Paused", "resumeAt": "2099-01-01T00:00:00Z",
                           "maxPauseSeconds": 60}, pause


def test_a_resume_at_without_a_pause_is_refused() -> None:
    decision = control.decide({"state": "Running"}, Phase.RUNNING, None,
                              bounds={"resumeAt": "2099-01-01T00:00:00Z"})

    assert decision.refusal is not None and "resumeAt ends a pause" in decision.refusal


def test_the_bounds_of_an_ended_task_are_refused() -> None:
    decision = control.decide({"state": "Running"}, Phase.SUCCEEDED, None,
                              bounds={"maxRunningSeconds": 60})

    assert decision.refusal is not None and "ended (Succeeded)" in decision.refusal


@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK,
                                   Phase.TERMINATED])
def test_the_rate_limit_of_an_ended_task_is_refused_naming_the_phase(phase: Phase) -> None:
    decision = control.decide({"state": "Terminated", "rateLimit": 100}, phase, None, None, 20)

    assert decision.refusal is not None and f"ended ({phase})" in decision.refusal
    assert control.decide({"rateLimit": 100}, phase, None, None, 100).in_effect


@pytest.mark.parametrize(("state", "phase", "target", "words"), [
    (T, Phase.TERMINATING, R, "terminated"),
    (T, Phase.ROLLED_BACK, P, "ended (RolledBack)"),
    (R, Phase.SUCCEEDED, T, "completed"),
    (T, Phase.SUCCEEDED, T, "ended (Succeeded)"),
    (T, Phase.FAILED, T, "ended (Failed)"),
    (R, Phase.SUCCEEDED, R, "ended (Succeeded)"),
    (R, Phase.SUCCEEDED, P, "ended"),
    (R, Phase.FAILED, R, "ended"),
    (R, Phase.FAILED, T, "ended"),
])
def test_refused_requests_say_why(state: DesiredState, phase: Phase, target: DesiredState,
                                  words: str) -> None:
    decision = control.decide({"state": state}, phase, target)

    assert decision.refusal is not None and words in decision.refusal


def test_terminate_with_a_policy_sets_both_and_a_later_other_policy_is_refused() -> None:
    first = control.decide({"state": "Running"}, Phase.RUNNING, T, OnTerminate.KEEP)
    again = control.decide({"state": "Terminated", "onTerminate": "Keep"}, Phase.TERMINATING,
                           T, OnTerminate.KEEP)
    other = control.decide({"state": "Terminated", "onTerminate": "Keep"}, Phase.TERMINATING,
                           T, OnTerminate.ROLLBACK)

    assert first.patch == {"state": "Terminated", "onTerminate": "Keep"}
    assert again.in_effect
    assert other.refusal is not None and "Keep" in other.refusal


FINAL = [Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK, Phase.TERMINATED]


@pytest.mark.parametrize("phase", FINAL)
@pytest.mark.parametrize("state", [R, P, T])
@pytest.mark.parametrize("target", [R, P, T])
def test_a_final_phase_changes_nothing_and_only_a_repeated_terminate_is_in_effect(
        phase: Phase, state: DesiredState, target: DesiredState) -> None:
    decision = control.decide({"state": state}, phase, target)

    repeat = phase in (Phase.ROLLED_BACK, Phase.TERMINATED) and state is T and target is T
    assert not decision.patch, decision
    assert decision.in_effect is repeat, decision
    if not repeat:
        assert decision.refusal is not None and f"ended ({phase})" in decision.refusal


def test_the_runners_success_counts_as_succeeded_until_a_rollback_begins() -> None:
    done = RunnerRecord(run_status=RunOutcome.SUCCEEDED)
    rolling = RunnerRecord(run_status=RunOutcome.SUCCEEDED,
                           rollback_status=RollbackOutcome.RUNNING)

    assert control.effective_phase(Phase.RUNNING, done) is Phase.SUCCEEDED
    assert control.effective_phase(Phase.TERMINATING, done) is Phase.SUCCEEDED
    assert control.effective_phase(Phase.ROLLING_BACK, rolling) is Phase.ROLLING_BACK
    assert control.effective_phase(Phase.RUNNING, RunnerRecord()) is Phase.RUNNING
    assert control.effective_phase(Phase.RUNNING, None) is Phase.RUNNING
    assert control.effective_phase(Phase.ROLLED_BACK, done) is Phase.ROLLED_BACK


@pytest.mark.parametrize(("phase", "started", "keep", "allowed"), [
    *((p, True, False, True) for p in FINAL),
    (Phase.PENDING, False, False, True),
    (Phase.QUEUED, False, False, True),
    (Phase.PAUSED, False, False, True),
    *((p, True, False, False) for p in (Phase.RUNNING, Phase.PAUSING, Phase.PAUSED,
                                        Phase.TERMINATING, Phase.ROLLING_BACK)),
    *((p, True, True, True) for p in (Phase.RUNNING, Phase.PAUSED, Phase.ROLLING_BACK)),
])
def test_delete_is_refused_while_rows_could_still_be_undone_unless_kept_on_purpose(
        phase: Phase, started: bool, keep: bool, allowed: bool) -> None:
    refusal = control.decide_delete(phase, started, keep, done=7)

    assert (refusal is None) is allowed, refusal
    if refusal is not None:
        assert phase in refusal and "keepWrites=true" in refusal and "7 rows" in refusal


def test_a_task_has_run_once_status_or_record_says_so() -> None:
    assert not control.has_run({}, None)
    assert not control.has_run({"phase": "Queued"}, RunnerRecord())
    assert control.has_run({"startedAt": "2026-01-01T00:00:00Z"}, None)
    assert control.has_run({}, RunnerRecord(run_status=RunOutcome.STOPPED, done=3))


def entry(token: str = "s3cret-token", **extra: object) -> dict[str, object]:
    return {"sha256": hash_token(token), "subject": "support-alice", "role": "operator",
            "organizations": ["acme"], **extra}


def test_a_token_document_maps_hashes_to_principals() -> None:
    table = parse_tokens(f"tokens: [{entry()}]".replace("'", '"'))

    principal = table[hash_token("s3cret-token")]
    assert (principal.subject, principal.role) == ("support-alice", Role.OPERATOR)
    assert principal.may_use("acme") and not principal.may_use("globex")


@pytest.mark.parametrize(("bad", "words"), [
    ({"sha256": "s3cret-token"}, "64 hex digits"),
    ({"role": "owner"}, "unknown role"),
    ({"organizations": ["*"]}, "only an admin"),
    ({"organizations": []}, "organizations"),
    ({"password": "x"}, "password"),
])
def test_a_bad_token_entry_is_refused_naming_it(bad: dict[str, object], words: str) -> None:
    with pytest.raises(TokenConfigError) as refused:
        parse_tokens(str([entry(**bad)]).replace("'", '"'))

    assert "token entry 1" in str(refused.value) and words in str(refused.value)


def test_a_placeholder_token_is_refused_outside_development() -> None:
    document = str([entry("changethis")]).replace("'", '"')

    with pytest.raises(TokenConfigError, match="placeholder"):
        parse_tokens(document, refuse=PLACEHOLDER_HASHES)
    assert parse_tokens(document)  # development accepts it


def test_settings_outside_development_need_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGTASK_DATABASE_URL", "postgresql://db/collect")

    with pytest.raises(ValidationError, match="no bearer tokens"):
        ApiSettings()  # type: ignore[call-arg]
    assert ApiSettings(environment="development").database_url == (  # type: ignore[call-arg]
        "postgresql://db/collect")
