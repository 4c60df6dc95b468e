"""The operator's settings, read from ``LONGTASK_OPERATOR_*`` environment variables.

One pydantic-settings class for the process: what the Jobs it makes look like (runner image,
database Secret, grace period, resources, the runner's own settings), how it watches
(namespaces, refresh interval), how replicas elect the active one (the Lease) and where
the webhooks go.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from longtask import storage
from longtask.settings import RunnerSettings

# resource.Quantity's serialized form (k8s.io/apimachinery/pkg/api/resource, as published
# in the Kubernetes OpenAPI schema); the CRD's spec.resources uses the same pattern.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)
# DNS-1123 label (Kubernetes API conventions): Secret keys are looser, but names are not.
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class _GivenRunnerSettings(RunnerSettings):
    """RunnerSettings from the values passed in and the defaults only.

    A BaseSettings reads the environment even in ``model_validate``; the operator's own
    ``LONGTASK_RUNNER_*`` variables must neither fail nor pass the values it checks.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class OperatorSettings(BaseSettings):
    """Everything the operator needs that is not in a LongTask.

    ``runnerImage`` has no default: an operator that does not know which runner to start
    should not start. Quantities are Kubernetes quantities (``100m``, ``512Mi``).
    """

    model_config = SettingsConfigDict(env_prefix="LONGTASK_OPERATOR_", extra="ignore")

    runner_image: str = Field(min_length=1, description="Image of the runner, e.g. repo/runner:1.2")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # The Secret holding LONGTASK_DATABASE_URL for the runner pods, in the task's namespace:
    # the runner's own database role (longtask/db/roles.py), not the operator's.
    database_secret_name: str = Field(default="longtask-database", pattern=_DNS_LABEL)
    database_secret_key: str = Field(default="url", min_length=1)
    # The runner needs no Kubernetes credentials: its own ServiceAccount, token not mounted.
    runner_service_account: str = Field(default="longtask-runner", pattern=_DNS_LABEL)
    # Seconds between SIGTERM and SIGKILL for a runner pod. A runner stops within one chunk
    # (well under a second: README.md, "The runner's contract") plus its rollback of the
    # open chunk; 30 s is the Kubernetes default and leaves room for a slow database.
    termination_grace_seconds: int = Field(default=30, ge=1, le=3600)
    # Job.spec.backoffLimit: crashes (not stops, not permanent failures) a run may survive.
    # 6 is the Kubernetes default.
    backoff_limit: int = Field(default=6, ge=0, le=100)
    # Container resources when the LongTask gives none. No CPU limit by default: CPU limits
    # throttle, and the runner's chunk timing adapts to whatever CPU it gets.
    cpu_request: str = "100m"
    memory_request: str = "256Mi"
    cpu_limit: str | None = None
    memory_limit: str | None = "1Gi"
    # Numeric user and group the runner runs as (the runner image's non-root user); a
    # numeric id lets the kubelet enforce runAsNonRoot.
    run_as_user: int = Field(default=10001, ge=1)
    run_as_group: int = Field(default=10001, ge=1)
    # RunnerSettings of every runner Job, as a JSON object of field name to value, e.g.
    # {"export_read_connections": "1"}; each becomes LONGTASK_RUNNER_<NAME> in the Job.
    # Checked against RunnerSettings here, so a typo stops the operator, not every task.
    runner_settings: dict[str, str] = Field(default_factory=dict)
    # Seconds between refreshes of status.progress from the runner's record while a task
    # is not final.
    progress_interval_seconds: float = Field(default=5.0, gt=0, le=300)
    # Tasks of one organization that may hold a runner at once in a namespace (started and
    # not final: running, pausing, paused, terminating, rolling back), whatever their
    # concurrency keys; the next waits in Queued. 0: no limit. 200 organizations share a
    # deployment, and one of them must not take every runner and database connection.
    max_running_per_organization: int = Field(default=10, ge=0, le=10_000)
    # An organization's quota on stored bytes (uploads and export outputs together) unless
    # its row in longtask.storage_usage sets its own: given to every runner Job as
    # LONGTASK_RUNNER_STORAGE_QUOTA_BYTES (an export part past it fails the export); the
    # chart gives the API the same value.
    storage_quota_bytes: int = Field(default=storage.DEFAULT_QUOTA_BYTES, ge=0)
    # The storage retention (retention.py), run by the leader: a file or export output is
    # removed storage_retention_seconds after the last task that uses it ended (final:
    # Succeeded, Failed, RolledBack, Terminated), never while one may still run, resume or
    # roll back; a file no task used, unused_file_retention_seconds after its upload (the
    # API writes that expiry with its own setting of the same name: keep them equal). A
    # pass every retention_interval_seconds; a file a create claimed less than
    # retention_claim_grace_seconds before a pass's listing gets no expiry from it (the
    # task may not be listed yet).
    storage_retention_seconds: float = Field(
        default=storage.DEFAULT_RETENTION_SECONDS, gt=0)
    unused_file_retention_seconds: float = Field(
        default=storage.DEFAULT_UNUSED_FILE_RETENTION_SECONDS, gt=0)
    retention_interval_seconds: float = Field(default=60.0, gt=0, le=86_400)
    retention_claim_grace_seconds: float = Field(
        default=storage.CLAIM_GRACE_SECONDS, ge=0, le=3600)
    # The webhooks (webhooks.py), sent by the leader: the YAML file of each organization's
    # endpoint and secret (the chart mounts it from a Secret; none: no webhooks), re-read
    # when it changes. Every webhook_interval_seconds the sender takes the oldest unsent
    # notification of each task, at most webhook_per_organization of one organization a
    # pass, on webhook_workers threads, each attempt cut off after webhook_timeout_seconds;
    # a refused attempt is retried after an exponential backoff with full jitter (1 s,
    # doubling, at most webhook_retry_cap_seconds) up to webhook_max_attempts in all (about
    # an hour with the defaults), then given up and logged (webhook_failed).
    webhooks_file: Path | None = None
    webhook_interval_seconds: float = Field(default=1.0, gt=0, le=300)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_workers: int = Field(default=4, ge=1, le=64)
    webhook_per_organization: int = Field(default=2, ge=1, le=100)
    webhook_max_attempts: int = Field(default=12, ge=1, le=100)
    webhook_retry_cap_seconds: float = Field(default=600.0, ge=1, le=86_400)
    # Comma-separated namespaces to watch; empty means every namespace (cluster-wide).
    watch_namespaces: str = ""
    # One active replica: every replica is a candidate for a coordination.k8s.io/v1 Lease
    # of this name and namespace (empty: the pod's own), and only its holder runs kopf's
    # handlers (leader.py). ``standalone`` skips the election: for a single process that is
    # sure to be alone, such as the tests and a local run.
    standalone: bool = False
    lease_name: str = Field(default="longtask-operator", pattern=_DNS_LABEL)
    lease_namespace: str = Field(default="", pattern=f"^$|{_DNS_LABEL}")
    # A standby takes the Lease once its record has not changed for lease_duration; the
    # holder exits when its last successful renewal was sent renew_deadline ago; both try
    # every retry_period. After a SIGKILL of the holder, a standby leads within about
    # lease_duration + retry_period; a holder may stop acting up to lease_duration -
    # renew_deadline late without ever overlapping its successor.
    lease_duration_seconds: int = Field(default=8, ge=2, le=600)
    renew_deadline_seconds: int = Field(default=5, ge=2, le=600)
    retry_period_seconds: int = Field(default=1, ge=1, le=60)
    # Where kopf serves the liveness probe, e.g. http://0.0.0.0:8080/healthz; none if empty.
    liveness_endpoint: str = ""
    # Level of the operator's JSON log lines (DEBUG, INFO, WARNING, ERROR).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("cpu_request", "memory_request", "cpu_limit", "memory_limit")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None and not _QUANTITY.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity such as '500m' or '1Gi'")
        return value

    @field_validator("runner_settings")
    @classmethod
    def _runner_settings(cls, value: dict[str, str]) -> dict[str, str]:
        known = RunnerSettings.model_fields
        unknown = sorted(key for key in value if key not in known)
        if unknown:
            raise ValueError(
                f"unknown runner setting(s) {', '.join(map(repr, unknown))}; "
                f"RunnerSettings has {', '.join(sorted(known))}"
            )
        try:
            _GivenRunnerSettings.model_validate(value)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}={e['input']!r}: {e['msg']}" for e in error.errors()
            )
            raise ValueError(f"runner setting(s) refused by RunnerSettings: {problems}") from None
        return value

    @model_validator(mode="after")
    def _unused_within_retention(self) -> OperatorSettings:
        if self.unused_file_retention_seconds > self.storage_retention_seconds:
            raise ValueError("unused_file_retention_seconds must not be greater than "
                             "storage_retention_seconds")
        return self

    @model_validator(mode="after")
    def _lease_timing(self) -> OperatorSettings:
        # The order the election relies on (kubernetes.leaderelection refuses the rest).
        if not self.lease_duration_seconds > self.renew_deadline_seconds:
            raise ValueError("lease_duration_seconds must be greater than "
                             "renew_deadline_seconds")
        if not self.renew_deadline_seconds > 1.2 * self.retry_period_seconds:
            raise ValueError("renew_deadline_seconds must be greater than 1.2 x "
                             "retry_period_seconds")
        return self

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces to watch, in the order given; empty for cluster-wide."""
        return tuple(ns.strip() for ns in self.watch_namespaces.split(",") if ns.strip())

    def default_resources(self) -> dict[str, dict[str, str]]:
        """``{"requests": {...}, "limits": {...}}`` for a LongTask that sets none."""
        requests = {"cpu": self.cpu_request, "memory": self.memory_request}
        limits = {
            name: value
            for name, value in (("cpu", self.cpu_limit), ("memory", self.memory_limit))
            if value is not None
        }
        return {"requests": requests, "limits": limits}
