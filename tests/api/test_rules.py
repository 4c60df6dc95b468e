"""Pure rules of the API, without servers: control transitions, token documents, settings."""

from __future__ import annotations

import pytest
from longtask.api import control
from longtask.api.auth import Role, TokenConfigError, hash_token, parse_tokens
from longtask.api.settings import PLACEHOLDER_HASHES, ApiSettings
from pydantic import ValidationError

from longtask.phases import DesiredState, OnTerminate, Phase

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


@pytest.mark.parametrize(("state", "phase", "target", "words"), [
    (T, Phase.TERMINATING, R, "terminated"),
    (T, Phase.ROLLED_BACK, P, "terminated"),
    (R, Phase.SUCCEEDED, T, "completed"),
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
