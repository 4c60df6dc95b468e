"""Pure builders of the Kubernetes objects the operator makes: the run Job and the rollback Job.

Each returns a plain ``dict`` ready for the API, built only from the task and the operator's
settings, so it is tested as a whole dict without a cluster (as kubespawner tests
``make_pod``). Every choice that a stop, a pause or a failure depends on is here:

* ``restartPolicy: Never`` with ``podReplacementPolicy: Failed``: a replacement pod is made
  only once the old one has fully terminated, so two runners of one task never overlap by
  Kubernetes' doing (fencing in the runner covers the rest).
* ``podFailurePolicy``: the runner's ``EXIT_FAILED`` fails the Job at once (retrying a bad
  file cannot help); a stop (``EXIT_STOPPED``, or 143 = killed by SIGTERM before the
  runner's handler was set), a fenced runner stepping aside (``EXIT_FENCED``) and a pod
  disruption (``DisruptionTarget``: drain, preemption) are ignored, so that a pause, a
  resume or a node drain never counts towards ``backoffLimit``. Any other exit (a crash,
  OOM kill 137) counts and is retried from the last checkpoint.
* The runner needs no Kubernetes credentials: its own ServiceAccount, no token mounted.
"""

from __future__ import annotations

import json
from typing import Any

from longtask.operator.names import job_name, label_value
from longtask.operator.settings import OperatorSettings

from longtask.constants import (
    API_VERSION,
    ENV_DATABASE_URL,
    ENV_PARALLELISM,
    ENV_POD_NAME,
    ENV_RATE_LIMIT,
    ENV_TASK_NAME,
    ENV_TASK_NAMESPACE,
    ENV_TASK_ORGANIZATION,
    ENV_TASK_PARAMS,
    ENV_TASK_TYPE,
    ENV_TASK_UID,
    EXIT_FAILED,
    EXIT_FENCED,
    EXIT_STOPPED,
    KIND,
    LABEL_MODE,
    LABEL_TASK,
    LABEL_TASK_UID,
    LABEL_TYPE,
    RUNNER_CONTAINER,
)
from longtask.model import Task
from longtask.phases import DesiredState
from longtask.settings import RunnerSettings
from longtask.taskrecord import Mode

# 128 + SIGTERM: the exit status the kubelet reports for a process the signal ended.
EXIT_SIGTERM = 143
_TMP_VOLUME = "tmp"
# The runner reads its tuning (RunnerSettings) from variables with this prefix.
RUNNER_SETTINGS_PREFIX: str = RunnerSettings.model_config["env_prefix"]


def owner_reference(task: Task) -> dict[str, Any]:
    """The LongTask as controller owner: the garbage collector deletes the Job with it."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": task.name,
        "uid": task.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def task_labels(task: Task, mode: Mode) -> dict[str, str]:
    """Labels on a Job and its pods; select a task's pods by ``LABEL_TASK_UID``."""
    return {
        LABEL_TASK: label_value(task.name),
        LABEL_TASK_UID: task.uid,
        LABEL_MODE: mode,
        LABEL_TYPE: label_value(task.spec.type),
    }


def resources(task: Task, settings: OperatorSettings) -> dict[str, dict[str, str]]:
    """The settings' defaults with ``spec.resources`` laid over them, key by key."""
    merged = settings.default_resources()
    given = task.spec.resources
    if given is not None:
        for part, values in (("requests", given.requests), ("limits", given.limits)):
            merged[part].update({name: str(value) for name, value in (values or {}).items()})
    return {part: values for part, values in merged.items() if values}


def runner_env(task: Task, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The runner's environment: the task, its throttles, the pod's name, the database URL,
    the organizations' storage quota (``storage_quota_bytes``, unless ``runner_settings``
    names it), then the operator's ``runner_settings`` as ``LONGTASK_RUNNER_<NAME>``.

    ``ENV_TASK_PARAMS`` is the params as compact JSON with sorted keys, and the runner
    settings come in sorted order (deterministic manifests).
    """
    spec = task.spec
    env: list[dict[str, Any]] = [
        {"name": ENV_TASK_UID, "value": task.uid},
        {"name": ENV_TASK_NAME, "value": task.name},
        {"name": ENV_TASK_NAMESPACE, "value": task.namespace},
        {"name": ENV_TASK_TYPE, "value": spec.type},
        {"name": ENV_TASK_ORGANIZATION, "value": spec.organization},
        {
            "name": ENV_TASK_PARAMS,
            "value": json.dumps(spec.params, sort_keys=True, separators=(",", ":")),
        },
        {"name": ENV_PARALLELISM, "value": str(spec.parallelism)},
    ]
    if spec.rate_limit is not None:
        env.append({"name": ENV_RATE_LIMIT, "value": str(spec.rate_limit)})
    env += [
        {"name": ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": ENV_DATABASE_URL,
            "valueFrom": {
                "secretKeyRef": {
                    "name": settings.database_secret_name,
                    "key": settings.database_secret_key,
                }
            },
        },
        # The root filesystem is read-only: no bytecode cache; logs reach the kubelet at once.
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if "storage_quota_bytes" not in settings.runner_settings:
        # The organizations' quota the API holds uploads to holds exports too.
        env.append({"name": f"{RUNNER_SETTINGS_PREFIX}STORAGE_QUOTA_BYTES",
                    "value": str(settings.storage_quota_bytes)})
    env += [
        {"name": f"{RUNNER_SETTINGS_PREFIX}{key.upper()}", "value": value}
        for key, value in sorted(settings.runner_settings.items())
    ]
    return env


def pod_failure_policy() -> dict[str, Any]:
    """Job ``podFailurePolicy``: fail on ``EXIT_FAILED``, ignore stops and disruptions."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": RUNNER_CONTAINER,
                    "operator": "In",
                    "values": [EXIT_FAILED],
                },
            },
            {
                "action": "Ignore",
                "onExitCodes": {
                    "containerName": RUNNER_CONTAINER,
                    "operator": "In",
                    # The API wants these ascending and unique.
                    "values": sorted({EXIT_STOPPED, EXIT_FENCED, EXIT_SIGTERM}),
                },
            },
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }


def _job(task: Task, settings: OperatorSettings, mode: Mode, suspend: bool) -> dict[str, Any]:
    labels = task_labels(task, mode)
    container = {
        "name": RUNNER_CONTAINER,
        "image": settings.runner_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "longtask.runner", mode, "--task", task.uid],
        "env": runner_env(task, settings),
        "resources": resources(task, settings),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": _TMP_VOLUME, "mountPath": "/tmp"}],
        # A crash's last log lines become the pod's termination message, which the Job's
        # Failed condition and the task's message can then quote.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.runner_service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": _TMP_VOLUME, "emptyDir": {}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(task.name, mode),
            "namespace": task.namespace,
            "labels": dict(labels),
            "ownerReferences": [owner_reference(task)],
        },
        "spec": {
            "suspend": suspend,
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": settings.backoff_limit,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": pod_failure_policy(),
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def build_run_job(
    task: Task, settings: OperatorSettings, *, suspend: bool | None = None
) -> dict[str, Any]:
    """The run Job (``batch/v1``) for ``task``, named ``lt-<task>-run``.

    ``suspend`` defaults to whether ``spec.state`` is anything but ``Running``, so a Job
    made for a task that is to wait starts with no pod.
    """
    if suspend is None:
        suspend = task.spec.state is not DesiredState.RUNNING
    return _job(task, settings, "run", suspend)


def build_rollback_job(task: Task, settings: OperatorSettings) -> dict[str, Any]:
    """The rollback Job for ``task``, named ``lt-<task>-rollback``; it starts at once."""
    return _job(task, settings, "rollback", suspend=False)
