"""The leader election's settings and the values it derives from them (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from longtask.operator import leader
from longtask.operator.settings import OperatorSettings
from pydantic import ValidationError


def test_the_default_timing_leaves_a_margin_between_the_deadline_and_the_lease() -> None:
    s = OperatorSettings(runner_image="r:1")

    assert (s.standalone, s.lease_name, s.lease_namespace) == (False, "longtask-operator", "")
    assert (s.lease_duration_seconds, s.renew_deadline_seconds, s.retry_period_seconds) == (
        8, 5, 1)


@pytest.mark.parametrize(("timing", "message"), [
    ({"lease_duration_seconds": 5, "renew_deadline_seconds": 5}, "greater than renew"),
    ({"renew_deadline_seconds": 3, "retry_period_seconds": 3}, "1.2 x retry"),
])
def test_a_timing_that_could_let_two_act_is_refused(timing: dict[str, int],
                                                   message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OperatorSettings(runner_image="r:1", **timing)  # type: ignore[arg-type]


def test_a_lease_namespace_must_be_a_dns_label() -> None:
    with pytest.raises(ValidationError, match="lease_namespace"):
        OperatorSettings(runner_image="r:1", lease_namespace="Not_A_Namespace")


def test_the_lease_namespace_is_the_given_one_else_the_pods_else_unknown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    account = tmp_path / "namespace"
    monkeypatch.setattr(leader, "SERVICE_ACCOUNT_NAMESPACE", account)
    unset = OperatorSettings(runner_image="r:1")

    assert leader.lease_namespace(OperatorSettings(runner_image="r:1",
                                                   lease_namespace="ops")) == "ops"
    with pytest.raises(RuntimeError, match="LONGTASK_OPERATOR_LEASE_NAMESPACE"):
        leader.lease_namespace(unset)
    account.write_text("longtask\n")
    assert leader.lease_namespace(unset) == "longtask"
