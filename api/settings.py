"""The API process's settings, from ``LONGTASK_API_*`` environment variables (pydantic-settings).

One class for the process. Outside ``environment: development`` it refuses to start with
no bearer tokens configured, with a token whose hash is that of a well-known placeholder
(``changethis``, ``changeme``, ...), or without a session secret for the console, so a
copied example config never reaches production.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from longtask import storage

# Secrets that example files and tutorials use; a token equal to one of them is refused
# outside development (the FastAPI full-stack template does the same for its secrets).
PLACEHOLDER_SECRETS = ("changethis", "changeme", "change-me", "secret", "token", "password",
                       "example", "test", "admin", "")
# Characters of LONGTASK_API_SESSION_SECRET outside development (32 of token_urlsafe: 192 bits).
SESSION_SECRET_MIN = 32
PLACEHOLDER_HASHES = frozenset(hashlib.sha256(s.encode()).hexdigest() for s in PLACEHOLDER_SECRETS)


class Environment(StrEnum):
    """Where the process runs; only ``development`` accepts placeholder or missing tokens."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


class ApiSettings(BaseSettings):
    """Settings of ``python -m longtask.api``; each field is ``LONGTASK_API_<NAME>``.

    Tokens come from ``tokens_file`` (a mounted Kubernetes Secret key, re-read when it
    changes) or ``tokens`` (the same JSON in an environment variable, e.g. from a Secret via
    ``secretKeyRef``). The format is in :mod:`longtask.api.auth`.
    """

    model_config = SettingsConfigDict(env_prefix="LONGTASK_API_", extra="ignore",
                                      populate_by_name=True)

    environment: Environment = Environment.PRODUCTION
    host: str = "0.0.0.0"  # the API serves inside a pod, behind a Service
    port: int = Field(default=8080, ge=1, le=65535)
    # Database of the runner and the file store: LONGTASK_API_DATABASE_URL, else the shared
    # LONGTASK_DATABASE_URL every other process reads.
    database_url: str = Field(
        min_length=1,
        validation_alias=AliasChoices("LONGTASK_API_DATABASE_URL", "LONGTASK_DATABASE_URL"),
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # The namespace whose LongTasks this API serves (one API per namespace).
    namespace: str = Field(default="default", min_length=1, max_length=63)
    # A kubeconfig file; when unset, the in-cluster service account, else ~/.kube/config.
    kubeconfig: Path | None = None
    kube_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    tokens_file: Path | None = None
    tokens: str | None = Field(default=None, repr=False)
    # The web console's sessions (api/console): the key their cookies are signed with
    # (HMAC-SHA256), the same on every replica (the chart generates one into a Secret);
    # at least 32 characters outside development, where an unset one is made at start
    # (sessions then end with the process). A session lasts session_max_age_seconds.
    session_secret: str | None = Field(default=None, repr=False)
    session_max_age_seconds: int = Field(default=8 * 3600, ge=60, le=30 * 86_400)
    # The cookie's Secure flag: unset, set when the request came over https (as uvicorn
    # sees it); true behind a proxy that ends TLS (the chart sets it with ingress TLS).
    session_cookie_secure: bool | None = None
    # Uploads: the largest file accepted, in bytes (default 1 GiB).
    max_upload_bytes: int = Field(default=1 << 30, ge=1)
    # Storage (longtask/storage.py): an organization's quota on stored bytes, uploads and
    # export outputs together, unless its row in longtask.storage_usage sets its own
    # (default 10 GiB); and how long a file no task has used is kept after its upload
    # (default 1 day; the operator's retention removes it, and keeps a used one
    # storage_retention_seconds after its last task ended).
    storage_quota_bytes: int = Field(default=storage.DEFAULT_QUOTA_BYTES, ge=0)
    unused_file_retention_seconds: float = Field(
        default=storage.DEFAULT_UNUSED_FILE_RETENTION_SECONDS, gt=0)
    # Validation dry run: data rows read by default and at most.
    validate_rows: int = Field(default=200, ge=1, le=100_000)
    validate_max_rows: int = Field(default=5000, ge=1, le=100_000)
    # Statement timeout of the dry run's queries (an export's row count), seconds.
    validate_statement_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    # One dry run's wall time, seconds: when it is up, reading stops and the report says
    # so (``sampled.stoppedBy: seconds``).
    validate_budget_seconds: float = Field(default=5.0, gt=0, le=300)
    # Bytes of the file the dry run samples rows from, and bytes its row count reads
    # (beyond, ``rowsTotal`` is estimated from the bytes read: ``rowsTotalEstimated``).
    validate_max_bytes: int = Field(default=8 << 20, ge=1 << 16, le=1 << 30)
    validate_count_bytes: int = Field(default=64 << 20, ge=1 << 16, le=1 << 34)
    # Dry runs (validate, and the one inside a create) at once, each in a worker thread
    # of their own pool, and at most this many for one token's subject: beyond, 503 and
    # 429 with Retry-After.
    max_validations: int = Field(default=4, ge=1, le=256)
    max_validations_per_subject: int = Field(default=2, ge=1, le=256)
    # Request bodies: the next chunk must come within body_idle_timeout_seconds, and the
    # whole body within body_timeout_seconds unless it keeps coming at
    # body_min_bytes_per_second or more; else 408 and the connection is closed.
    body_idle_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    body_min_bytes_per_second: int = Field(default=64 << 10, ge=1)
    # Server-Sent Events: a keep-alive comment this often (seconds), a stream lasts at most
    # watch_max_seconds, and at most max_watches streams are open at once (each holds a
    # worker thread while it waits for the Kubernetes watch).
    watch_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    watch_max_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    max_watches: int = Field(default=16, ge=1, le=1000)
    # ... and at most this many of them for one token's subject.
    max_watches_per_subject: int = Field(default=4, ge=1, le=1000)
    # Pagination of lists: default and largest page.
    page_size: int = Field(default=50, ge=1, le=1000)
    max_page_size: int = Field(default=500, ge=1, le=10_000)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _tokens_outside_development(self) -> ApiSettings:
        if self.environment is Environment.DEVELOPMENT:
            return self
        if self.tokens_file is None and not self.tokens:
            raise ValueError(
                "no bearer tokens configured: set LONGTASK_API_TOKENS_FILE (a mounted Secret) "
                "or LONGTASK_API_TOKENS, or LONGTASK_API_ENVIRONMENT=development"
            )
        secret = self.session_secret or ""
        if len(secret) < SESSION_SECRET_MIN or secret.lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "LONGTASK_API_SESSION_SECRET must be a random value of at least "
                f"{SESSION_SECRET_MIN} characters (the console's session cookies are signed "
                "with it; every replica needs the same one): e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))', or "
                "LONGTASK_API_ENVIRONMENT=development")
        return self

    @property
    def refuses_placeholders(self) -> bool:
        """True when tokens that hash like a placeholder secret must be refused."""
        return self.environment is not Environment.DEVELOPMENT
