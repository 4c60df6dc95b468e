"""The abuse suite's stack: the real API (a uvicorn server in the test, or its own process
where its memory or its latency is measured), a fresh PostgreSQL database, a fresh
namespace of the local Kubernetes control plane, and two organizations' operator tokens:
acme's (the victim, given things by :func:`devcluster.abuse.plant`) and globex's.

The scenarios are :mod:`devcluster.abuse`'s, which ``bench/security_bench.py`` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg2.extensions
import pytest
from longtask.api.settings import ApiSettings

from devcluster import abuse


@pytest.fixture
def seeded(db: psycopg2.extensions.connection) -> dict[str, int]:
    """acme and globex, their Households forms, and acme's form of every field type."""
    return abuse.seed_organizations(db)


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    """Room for hostile files (a few MB); a watch ends within two seconds."""
    return api_settings.model_copy(update={"max_upload_bytes": 16 << 20,
                                           "watch_max_seconds": 2, "page_size": 50})


@pytest.fixture
def acme(client_as: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """An operator of acme."""
    return client_as("operator")


@pytest.fixture
def globex(client_as: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """An operator of globex only."""
    return client_as("other")


@pytest.fixture
def export_rows() -> int:
    """Submissions in acme's export (a test needing a larger output overrides it)."""
    return 300


@pytest.fixture
def victim(acme: httpx.Client, db: psycopg2.extensions.connection, seeded: dict[str, int],
           runner_db_url: str, export_rows: int) -> abuse.Victim:
    """acme's tasks, files, export output, row errors and rollback conflicts."""
    return abuse.plant(acme, db, seeded["acme"], runner_db_url, export_rows=export_rows)


@pytest.fixture
def api_process(api_settings: ApiSettings, tmp_path: Path) -> Iterator[abuse.ApiProcess]:
    """The API as its own process (``python -m longtask.api``) with the test's settings."""
    api = abuse.launch_api(api_settings, tmp_path / "api.log")
    try:
        yield api
    finally:
        api.stop()
