"""Process settings read from the environment (pydantic-settings).

Each process reads only what it needs: :class:`DatabaseSettings` everywhere the database is
used, :class:`RunnerSettings` in the runner.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from longtask import storage


class DatabaseSettings(BaseSettings):
    """``LONGTASK_DATABASE_URL``: a libpq URL, e.g. ``postgresql://user:pw@host:5432/collect``."""

    model_config = SettingsConfigDict(env_prefix="LONGTASK_", extra="ignore")

    database_url: str = Field(min_length=1)


class MigrateSettings(BaseSettings):
    """``longtask-migrate``'s URL: the migration owner's, ``LONGTASK_MIGRATE_DATABASE_URL``,
    else the shared ``LONGTASK_DATABASE_URL`` (one URL for everything in development)."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(
        min_length=1,
        validation_alias=AliasChoices("LONGTASK_MIGRATE_DATABASE_URL", "LONGTASK_DATABASE_URL"),
    )


class RunnerSettings(BaseSettings):
    """Tuning of the runner's chunk loop; defaults suit a shared production database."""

    model_config = SettingsConfigDict(env_prefix="LONGTASK_RUNNER_", extra="ignore")

    # A chunk should take well under a second (README.md, "The runner's contract"): this
    # bounds both how long a pause waits and how much work a stop throws away.
    chunk_target_seconds: float = Field(default=0.25, gt=0, le=5)
    chunk_min_rows: int = Field(default=50, ge=1)
    # The time target sets the size; this cap only stops a runaway. An export streams up to
    # ~300k rows/s, and COPY TO in 20k-row pieces ran a fifth slower than in 100k-row ones.
    chunk_max_rows: int = Field(default=100_000, ge=1)
    chunk_initial_rows: int = Field(default=500, ge=1)
    # An export copies up to this many pieces at once, each on a read connection of its
    # own, and commits them in order: a COPY TO is one server process's work, and two at
    # once ran 1.6 times as fast on two cores. 1: the task's one read connection reads.
    export_read_connections: int = Field(default=2, ge=1, le=8)
    # Upper bound on one CSV field and one physical record, in characters; longer is a row
    # error, so memory stays bounded whatever the file holds.
    max_field_chars: int = Field(default=131_072, ge=1024)
    max_record_chars: int = Field(default=1_048_576, ge=4096)
    # Row errors stored per task (the count goes on beyond it).
    max_stored_row_errors: int = Field(default=10_000, ge=0)
    # The server cancels any statement of the runner's that runs longer (a lock held for
    # minutes, say): the runner then exits as crashed and its Job starts it again, from
    # the last checkpoint. Chunks take a fraction of a second.
    statement_timeout_seconds: float = Field(default=300, gt=0)
    # On every connection the runner opens (its chunks', its reads', a count's, each export
    # copier's), as libpq parameters, unless the database URL sets the same one: a value in
    # the URL wins (libpq's own names there: connect_timeout, keepalives, keepalives_idle,
    # keepalives_interval, keepalives_count, tcp_user_timeout in milliseconds).
    # Longest wait for a connection, per address tried; an unreachable database then ends
    # the runner as crashed (exit 1, the Job starts it again). libpq's floor is 2 s.
    connect_timeout_seconds: int = Field(default=10, ge=2, le=300)
    # TCP keepalive probes on an idle connection (the chunks' during a rate limit's wait,
    # a read connection between pieces): a peer gone without a word (node lost, a NAT or
    # firewall that dropped the flow) is noticed after idle + interval * count seconds.
    keepalives: bool = True
    keepalives_idle_seconds: int = Field(default=30, ge=1, le=7200)
    keepalives_interval_seconds: int = Field(default=10, ge=1, le=600)
    keepalives_count: int = Field(default=3, ge=1, le=100)
    # Longest time data the runner sent may stay unacknowledged by the server's host before
    # the kernel drops the connection (a COPY into a vanished server); 0: the system's
    # default (about 15 minutes on Linux). Keep it at least idle + interval * count, or it
    # also cuts the keepalive probing short.
    tcp_user_timeout_seconds: float = Field(default=60, ge=0, le=3600)
    # After a stop is requested, the longest the runner waits for its work to end (a chunk
    # rolled back, the stop recorded) before it exits with the stop's code anyway: a server
    # that does not answer must not keep the pod until the kubelet's SIGKILL. Keep it well
    # under the operator's termination_grace_seconds (30 by default).
    stop_deadline_seconds: float = Field(default=5, ge=0.5, le=25)
    # An organization's quota on stored bytes (uploads and export outputs together) unless
    # its row in longtask.storage_usage sets its own: an export part that would pass it
    # fails the export (longtask/storage.py). The chart sets the API's to the same value.
    storage_quota_bytes: int = Field(default=storage.DEFAULT_QUOTA_BYTES, ge=0)

    def libpq_options(self) -> dict[str, str]:
        """The connection settings as libpq parameters (name to value, libpq's units)."""
        return {
            "connect_timeout": str(self.connect_timeout_seconds),
            "keepalives": "1" if self.keepalives else "0",
            "keepalives_idle": str(self.keepalives_idle_seconds),
            "keepalives_interval": str(self.keepalives_interval_seconds),
            "keepalives_count": str(self.keepalives_count),
            "tcp_user_timeout": str(round(self.tcp_user_timeout_seconds * 1000)),
        }
