"""The operator's settings: environment names, defaults and refusals."""

from __future__ import annotations

import pytest
from longtask.operator.settings import OperatorSettings
from pydantic import ValidationError


def test_settings_are_read_from_the_operator_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGTASK_OPERATOR_RUNNER_IMAGE", "runner:1.0")
    monkeypatch.setenv("LONGTASK_OPERATOR_TERMINATION_GRACE_SECONDS", "45")
    monkeypatch.setenv("LONGTASK_OPERATOR_WATCH_NAMESPACES", "collect, exports ,")
    s = OperatorSettings()  # type: ignore[call-arg]
    got = (s.runner_image, s.termination_grace_seconds, s.namespaces)
    assert got == ("runner:1.0", 45, ("collect", "exports")), got


def test_an_operator_without_a_runner_image_does_not_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LONGTASK_OPERATOR_RUNNER_IMAGE", raising=False)
    with pytest.raises(ValidationError, match="runner_image"):
        OperatorSettings()  # type: ignore[call-arg]


def test_a_resource_that_is_not_a_quantity_is_refused() -> None:
    with pytest.raises(ValidationError, match="quantity"):
        OperatorSettings(runner_image="r:1", memory_limit="1 GB")


def test_empty_watch_namespaces_means_cluster_wide() -> None:
    assert OperatorSettings(runner_image="r:1").namespaces == ()


def test_default_grace_period_is_kubernetes_default() -> None:
    assert OperatorSettings(runner_image="r:1").termination_grace_seconds == 30
