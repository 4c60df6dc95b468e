"""Process settings read from the environment (pydantic-settings).

Each process reads only what it needs: :class:`DatabaseSettings` everywhere the database is
used, :class:`RunnerSettings` in the runner.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    """``LONGTASK_DATABASE_URL``: a libpq URL, e.g. ``postgresql://user:pw@host:5432/collect``."""

    model_config = SettingsConfigDict(env_prefix="LONGTASK_", extra="ignore")

    database_url: str = Field(min_length=1)


class RunnerSettings(BaseSettings):
    """Tuning of the runner's chunk loop; defaults suit a shared production database."""

    model_config = SettingsConfigDict(env_prefix="LONGTASK_RUNNER_", extra="ignore")

    # A chunk should take well under a second (DESIGN.md, "Bounded chunks"): this bounds
    # both how long a pause waits and how much work a stop throws away.
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
