"""Fixtures shared by the whole suite.

Every test runs against real servers: a throwaway PostgreSQL cluster (or the one named by
``LONGTASK_TEST_DATABASE_URL``, a superuser's) and, for the control-plane tests, the local
Kubernetes control plane from :mod:`devcluster.kube`. ``db_url`` is the migration owner's;
``api_db_url``, ``operator_db_url`` and ``runner_db_url`` log in as the components' own
roles, and the tests run each component with its own. The API's server, tokens and seeded
organizations are the plugin ``tests/api_fixtures.py``'s (tests/api and tests/security).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from devcluster import postgres, realdata
from longtask.db import connect
from longtask.db.migrate import upgrade

pytest_plugins = ["devcluster.pytest_fixtures", "api_fixtures"]

REPO = Path(__file__).resolve().parent.parent
_TEMPLATE = "longtask_template"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database: given, or a throwaway cluster."""
    given = os.environ.get("LONGTASK_TEST_DATABASE_URL")
    if given:
        yield given
        return
    server = postgres.start()
    try:
        yield server.url
    finally:
        server.stop()


def _with_db(server_url: str, dbname: str) -> str:
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def migrated_template(pg_server_url: str) -> str:
    """A database with every migration applied, copied by each test's database."""
    admin = psycopg2.connect(pg_server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {_TEMPLATE}")
        cur.execute(f"CREATE DATABASE {_TEMPLATE}")
    admin.close()
    upgrade(_with_db(pg_server_url, _TEMPLATE))
    return _TEMPLATE


@pytest.fixture
def db_url(pg_server_url: str, migrated_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} TEMPLATE {migrated_template}")
    try:
        yield _with_db(pg_server_url, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="session")
def db_login_roles(pg_server_url: str, migrated_template: str) -> dict[str, str]:
    """Login roles of the API, the operator and the runner, each a member of its group role
    only (migration 0003), made once per server: component -> ``role:password``."""
    return postgres.make_login_roles(pg_server_url, "longtask_test")


def _role_url(db_url: str, login: str) -> str:
    role, _, password = login.partition(":")
    return postgres.with_user(db_url, role, password)


@pytest.fixture
def api_db_url(db_url: str, db_login_roles: dict[str, str]) -> str:
    """The test's database as the API's login role (``longtask_api``'s grants only)."""
    return _role_url(db_url, db_login_roles["api"])


@pytest.fixture
def operator_db_url(db_url: str, db_login_roles: dict[str, str]) -> str:
    """The test's database as the operator's login role (``longtask_operator``'s grants)."""
    return _role_url(db_url, db_login_roles["operator"])


@pytest.fixture
def runner_db_url(db_url: str, db_login_roles: dict[str, str]) -> str:
    """The test's database as the runner's login role (``longtask_runner``'s grants)."""
    return _role_url(db_url, db_login_roles["runner"])


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg2.extensions.connection]:
    """An autocommit connection to the test's database, for setup and assertions."""
    conn = connect(db_url, application_name="longtask-tests")
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real input files carried in the repository (``data/real``)."""
    for name in realdata.NAMES:
        realdata.path(name)  # raises, naming the folder, when one is missing
    return realdata.FOLDER
