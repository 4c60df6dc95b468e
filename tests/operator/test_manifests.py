"""The Job builders, compared as whole dicts (as kubespawner tests make_pod)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest
from longtask.operator.manifests import build_rollback_job, build_run_job
from longtask.operator.names import is_dns_label, job_name, label_value, safe_name
from longtask.operator.settings import OperatorSettings

from longtask.model import Task, TaskSpec
from longtask.settings import RunnerSettings

UID = "6f1c1d9e-7c1b-4c0e-9a53-2f0f3c3f7a11"
FILE_ID = "0b9f3f9e-55d5-4a55-a1f0-8f3c6a0f0d2e"


def _task(name: str = "acme-households", **spec: Any) -> Task:
    fields: dict[str, Any] = {
        "type": "BaselineUpload",
        "organization": "acme",
        "params": {"form": "Households", "fileId": FILE_ID},
    }
    fields.update(spec)
    return Task(
        name=name,
        namespace="collect",
        uid=UID,
        generation=1,
        created_at=dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC),
        spec=TaskSpec.model_validate(fields),
    )


def _settings(**overrides: Any) -> OperatorSettings:
    values: dict[str, Any] = {"runner_image": "registry.example/longtask-runner:0.1.0"}
    values.update(overrides)
    return OperatorSettings(_env_file=None, **values)  # type: ignore[call-arg]


def _expected_job(mode: str, suspend: bool) -> dict[str, Any]:
    labels = {
        "collect.atlan.com/task": "acme-households",
        "collect.atlan.com/task-uid": UID,
        "collect.atlan.com/mode": mode,
        "collect.atlan.com/type": "BaselineUpload",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"lt-acme-households-{mode}",
            "namespace": "collect",
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "collect.atlan.com/v1alpha1",
                    "kind": "LongTask",
                    "name": "acme-households",
                    "uid": UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "suspend": suspend,
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 6,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "runner",
                            "operator": "In",
                            "values": [3],
                        },
                    },
                    {
                        "action": "Ignore",
                        "onExitCodes": {
                            "containerName": "runner",
                            "operator": "In",
                            "values": [75, 76, 143],
                        },
                    },
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "longtask-runner",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "runner",
                            "image": "registry.example/longtask-runner:0.1.0",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python", "-m", "longtask.runner", mode, "--task", UID],
                            "env": [
                                {"name": "LONGTASK_TASK_UID", "value": UID},
                                {"name": "LONGTASK_TASK_NAME", "value": "acme-households"},
                                {"name": "LONGTASK_TASK_NAMESPACE", "value": "collect"},
                                {"name": "LONGTASK_TASK_TYPE", "value": "BaselineUpload"},
                                {"name": "LONGTASK_TASK_ORGANIZATION", "value": "acme"},
                                {
                                    "name": "LONGTASK_TASK_PARAMS",
                                    "value": f'{{"fileId":"{FILE_ID}","form":"Households"}}',
                                },
                                {"name": "LONGTASK_PARALLELISM", "value": "1"},
                                {
                                    "name": "LONGTASK_POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                                {
                                    "name": "LONGTASK_DATABASE_URL",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": "longtask-database", "key": "url"}
                                    },
                                },
                                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                                {"name": "PYTHONUNBUFFERED", "value": "1"},
                                {"name": "LONGTASK_RUNNER_STORAGE_QUOTA_BYTES",
                                 "value": str(10 << 30)},
                            ],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "256Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def _differences(want: Any, got: Any, path: str = "") -> list[str]:
    """Every place where ``got`` differs from ``want``: ``path: expected X, got Y``."""
    if isinstance(want, dict) and isinstance(got, dict):
        return [
            line
            for key in sorted(want.keys() | got.keys())
            for line in _differences(want.get(key), got.get(key), f"{path}.{key}")
        ]
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [
            line
            for i, (w, g) in enumerate(zip(want, got, strict=True))
            for line in _differences(w, g, f"{path}[{i}]")
        ]
    return [] if want == got else [f"{path}: expected {want!r}, got {got!r}"]


def test_run_job_is_the_whole_expected_manifest() -> None:
    got = build_run_job(_task(), _settings())
    assert got == _expected_job("run", suspend=False), _differences(
        _expected_job("run", suspend=False), got
    )


def test_rollback_job_is_the_whole_expected_manifest() -> None:
    got = build_rollback_job(_task(), _settings())
    assert got == _expected_job("rollback", suspend=False), _differences(
        _expected_job("rollback", suspend=False), got
    )


def test_run_job_of_a_task_created_paused_starts_suspended() -> None:
    job = build_run_job(_task(state="Paused"), _settings())
    assert job["spec"]["suspend"] is True, job["spec"]["suspend"]


def test_rollback_job_never_starts_suspended() -> None:
    job = build_rollback_job(_task(state="Terminated"), _settings())
    assert job["spec"]["suspend"] is False, job["spec"]["suspend"]


def _env(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_rate_limit_and_parallelism_reach_the_runner_env() -> None:
    env = _env(build_run_job(_task(rateLimit=200, parallelism=4), _settings()))
    got = (env.get("LONGTASK_RATE_LIMIT"), env.get("LONGTASK_PARALLELISM"))
    assert got == ("200", "4"), f"expected ('200', '4'), got {got}"


def test_no_rate_limit_means_no_rate_limit_env() -> None:
    env = _env(build_run_job(_task(), _settings()))
    assert "LONGTASK_RATE_LIMIT" not in env, env


def test_database_url_comes_from_the_configured_secret() -> None:
    settings = _settings(database_secret_name="collect-db", database_secret_key="dsn")
    env = _env(build_run_job(_task(), settings))
    want = {"secretKeyRef": {"name": "collect-db", "key": "dsn"}}
    assert env["LONGTASK_DATABASE_URL"] == want, env["LONGTASK_DATABASE_URL"]


def test_spec_resources_override_defaults_key_by_key() -> None:
    task = _task(resources={"requests": {"memory": "2Gi"}, "limits": {"cpu": 2, "memory": "4Gi"}})
    (container,) = build_run_job(task, _settings())["spec"]["template"]["spec"]["containers"]
    want = {
        "requests": {"cpu": "100m", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert container["resources"] == want, container["resources"]


def test_grace_period_and_backoff_come_from_settings() -> None:
    job = build_run_job(_task(), _settings(termination_grace_seconds=90, backoff_limit=2))
    got = (
        job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        job["spec"]["backoffLimit"],
    )
    assert got == (90, 2), f"expected (90, 2), got {got}"


def test_params_json_is_the_same_whatever_the_key_order() -> None:
    a = _task(params={"form": "Households", "fileId": FILE_ID})
    b = _task(params={"fileId": FILE_ID, "form": "Households"})
    got = (
        _env(build_run_job(a, _settings()))["LONGTASK_TASK_PARAMS"],
        _env(build_run_job(b, _settings()))["LONGTASK_TASK_PARAMS"],
    )
    assert got[0] == got[1], got


def test_runner_settings_follow_the_task_env_in_sorted_order() -> None:
    settings = _settings(
        runner_settings={"export_read_connections": "1", "chunk_target_seconds": "0.5"}
    )
    for mode, build in (("run", build_run_job), ("rollback", build_rollback_job)):
        (want_container,) = _expected_job(mode, suspend=False)["spec"]["template"]["spec"][
            "containers"
        ]
        want = [
            *want_container["env"],
            {"name": "LONGTASK_RUNNER_CHUNK_TARGET_SECONDS", "value": "0.5"},
            {"name": "LONGTASK_RUNNER_EXPORT_READ_CONNECTIONS", "value": "1"},
        ]
        (container,) = build(_task(), settings)["spec"]["template"]["spec"]["containers"]
        assert container["env"] == want, _differences(want, container["env"])


def test_the_runner_reads_the_settings_its_job_gives_it(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(runner_settings={"max_stored_row_errors": "0", "chunk_max_rows": "20000"})
    for name in [n for n in os.environ if n.startswith("LONGTASK_RUNNER_")]:
        monkeypatch.delenv(name)
    for name, value in _env(build_run_job(_task(), settings)).items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)

    runner = RunnerSettings()
    got = (runner.max_stored_row_errors, runner.chunk_max_rows, runner.chunk_min_rows)
    assert got == (0, 20_000, 50), got


# --------------------------------------------------------------------------- names


def test_short_task_names_are_kept_readable() -> None:
    got = (job_name("export-2017", "run"), job_name("export-2017", "rollback"))
    assert got == ("lt-export-2017-run", "lt-export-2017-rollback"), got


@pytest.mark.parametrize("length", [50, 56, 63])
@pytest.mark.parametrize("mode", ["run", "rollback"])
def test_long_names_are_cut_to_a_dns_label_with_a_hash(length: int, mode: str) -> None:
    name = job_name("a" * length, mode)  # type: ignore[arg-type]
    assert is_dns_label(name) and name.endswith(f"-{mode}"), f"{name!r} ({len(name)} chars)"


def test_cut_names_of_different_tasks_differ() -> None:
    stem = "baseline-upload-for-the-households-form-of-acme-district"
    a, b = job_name(stem + "-one", "rollback"), job_name(stem + "-two", "rollback")
    assert a != b, f"two tasks share the Job name {a!r}"


def test_cut_name_is_deterministic_and_keeps_the_prefix() -> None:
    name = "x" * 60
    first, second = job_name(name, "rollback"), job_name(name, "rollback")
    assert first == second and first.startswith("lt-xxxx"), (first, second)


def test_longest_fitting_name_is_not_hashed() -> None:
    name = "a" * (63 - len("lt--run"))
    assert job_name(name, "run") == f"lt-{name}-run"


def test_one_character_more_is_hashed() -> None:
    name = "a" * (64 - len("lt--run"))
    got = job_name(name, "run")
    assert len(got) == 63 and got != f"lt-{name}-run", f"{got!r} ({len(got)} chars)"


def test_characters_a_job_name_may_not_hold_are_replaced_and_hashed() -> None:
    got = job_name("Daily.Export", "run")
    assert is_dns_label(got) and got.startswith("lt-daily-export-"), got


def test_a_label_value_keeps_case_and_dots() -> None:
    assert label_value("BaselineUpload.v2") == "BaselineUpload.v2"


def test_a_long_label_value_is_cut_with_a_hash() -> None:
    got = label_value("B" * 70)
    assert len(got) == 63 and got.startswith("BBBB") and got[-9] == "-", got


def test_a_label_value_with_spaces_is_replaced_and_hashed() -> None:
    got = label_value("Export/acme/Household survey")
    assert got.startswith("Export-acme-Household-survey-") and " " not in got, got


def test_no_room_for_a_stem_is_an_error() -> None:
    with pytest.raises(ValueError, match="no room"):
        safe_name("p" * 40, "name-that-does-not-fit", "s" * 20)


def test_the_runner_gets_the_operators_storage_quota_unless_its_settings_name_one() -> None:
    quota = _env(build_run_job(_task(), _settings(storage_quota_bytes=5000)))
    named = _env(build_run_job(_task(), _settings(
        storage_quota_bytes=5000, runner_settings={"storage_quota_bytes": "7000"})))

    assert quota["LONGTASK_RUNNER_STORAGE_QUOTA_BYTES"] == "5000"
    assert named["LONGTASK_RUNNER_STORAGE_QUOTA_BYTES"] == "7000"
    assert len([e for e in build_run_job(_task(), _settings(
        runner_settings={"storage_quota_bytes": "7000"}))["spec"]["template"]["spec"][
            "containers"][0]["env"] if e["name"].endswith("STORAGE_QUOTA_BYTES")]) == 1
