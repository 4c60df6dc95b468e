"""The operator's settings: environment names, defaults and refusals."""

from __future__ import annotations

import json

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


def _from_env(monkeypatch: pytest.MonkeyPatch, runner_settings: object) -> OperatorSettings:
    """OperatorSettings as the operator starts: from its environment, the map as JSON."""
    monkeypatch.setenv("LONGTASK_OPERATOR_RUNNER_IMAGE", "runner:1.0")
    monkeypatch.setenv("LONGTASK_OPERATOR_RUNNER_SETTINGS", json.dumps(runner_settings))
    return OperatorSettings()  # type: ignore[call-arg]


def test_no_runner_settings_by_default() -> None:
    assert OperatorSettings(runner_image="r:1").runner_settings == {}


def test_runner_settings_are_read_as_a_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    given = {"export_read_connections": "1", "chunk_target_seconds": "0.5"}
    assert _from_env(monkeypatch, given).runner_settings == given


def test_an_unknown_runner_setting_stops_the_operator_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match=r"unknown runner setting\(s\) 'chunk_size'"):
        _from_env(monkeypatch, {"chunk_size": "100", "chunk_min_rows": "10"})


def test_a_runner_setting_out_of_range_stops_the_operator_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError) as refused:
        _from_env(monkeypatch, {"export_read_connections": "9", "chunk_min_rows": "10"})
    (error,) = refused.value.errors()
    assert error["loc"] == ("runner_settings",), error
    assert error["msg"] == (
        "Value error, runner setting(s) refused by RunnerSettings: "
        "export_read_connections='9': Input should be less than or equal to 8"
    ), error["msg"]


def test_a_runner_setting_that_is_not_a_number_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match=r"chunk_target_seconds='fast': .*valid number"):
        _from_env(monkeypatch, {"chunk_target_seconds": "fast"})


def test_a_runner_setting_that_is_not_a_string_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match=r"runner_settings\.export_read_connections"):
        _from_env(monkeypatch, {"export_read_connections": 1})


def test_the_operators_own_runner_variables_do_not_decide_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the given values and RunnerSettings' defaults are checked, not the environment.
    monkeypatch.setenv("LONGTASK_RUNNER_CHUNK_MIN_ROWS", "0")
    assert _from_env(monkeypatch, {"chunk_min_rows": "10"}).runner_settings == {
        "chunk_min_rows": "10"
    }
    monkeypatch.setenv("LONGTASK_RUNNER_EXPORT_READ_CONNECTIONS", "1")
    with pytest.raises(ValidationError, match="export_read_connections='9'"):
        _from_env(monkeypatch, {"export_read_connections": "9"})
