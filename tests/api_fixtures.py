"""The API under test: a real uvicorn server on a loopback port, in a thread of the test.

A plugin (``pytest_plugins`` of tests/conftest.py), so tests/api and tests/security share
it. Each test gets its own server, configured with the test's fresh PostgreSQL database, a
fresh namespace of the session's local Kubernetes control plane (the LongTask CRD
applied), and a token file holding the hashes of the tokens below. Clients speak HTTP to it
with httpx; nothing of the API is replaced.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2.extensions
import pytest
import uvicorn
import yaml
from longtask.api.app import create_app
from longtask.api.auth import hash_token
from longtask.api.settings import ApiSettings

from devcluster import kube

sys.path.insert(0, str(Path(__file__).resolve().parent / "runner"))
import runner_support
from api_support import TOKENS, UPLOAD_LIMIT, token_of

SESSION_SECRET = "a-test-session-secret-of-32-characters-at-least"

START_TIMEOUT = 10.0


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """The tokens Secret as mounted: YAML entries with hashes, never the tokens."""
    path = tmp_path / "tokens.yaml"
    entries = [{"sha256": hash_token(token_of(role)), **entry} for role, entry in TOKENS.items()]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


@pytest.fixture
def api_namespace(kube_namespace: str, project_crds: list[str]) -> str:
    """The namespace the API serves: a fresh one with the CRD installed."""
    return kube_namespace


@pytest.fixture
def seeded(db: psycopg2.extensions.connection) -> dict[str, int]:
    """Organizations acme and globex, and acme's form Households."""
    acme = runner_support.create_org(db, "acme")
    globex = runner_support.create_org(db, "globex")
    form = runner_support.create_form(db, acme, "Households", [
        ("household_id", "text", True), ("head_name", "text", True),
        ("members", "integer", False), ("phone", "phone", False)])
    runner_support.create_form(db, globex, "Households", [("head_name", "text", True)])
    return {"acme": acme, "globex": globex, "households": form}


@pytest.fixture
def api_settings(api_db_url: str, api_namespace: str, kube_cluster: kube.KubeCluster,
                 token_file: Path, seeded: dict[str, int]) -> ApiSettings:
    """Production settings (placeholders refused) with a small upload limit."""
    return ApiSettings(
        environment="production", database_url=api_db_url, namespace=api_namespace,
        kubeconfig=kube_cluster.kubeconfig, tokens_file=token_file,
        max_upload_bytes=UPLOAD_LIMIT, watch_heartbeat_seconds=1, db_pool_size=8,
        page_size=2, session_secret=SESSION_SECRET,
    )


class RunningServer:
    """A uvicorn server serving one app on ``url`` from a thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="uvicorn", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start within {START_TIMEOUT} s")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[ApiSettings], str]]:
    """``serve(settings) -> base URL``: start an API server; all stop after the test."""
    servers: list[RunningServer] = []

    def start(settings: ApiSettings) -> str:
        server = RunningServer(create_app(settings))
        server.start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def api_url(serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> str:
    """Base URL of the test's API server."""
    return serve(api_settings)


@pytest.fixture
def client_as(api_url: str) -> Iterator[Callable[[str | None], httpx.Client]]:
    """``client_as(role)``: an httpx client sending that identity's token (None: no token)."""
    clients: list[httpx.Client] = []

    def make(role: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token_of(role)}"} if role else {}
        client = httpx.Client(base_url=api_url, headers=headers, timeout=30)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def operator(client_as: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """An operator of organization acme."""
    return client_as("operator")


@pytest.fixture
def viewer(client_as: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """A viewer of organization acme."""
    return client_as("viewer")


@pytest.fixture
def other(client_as: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """An operator of organization globex only."""
    return client_as("other")


@pytest.fixture
def admin(client_as: Callable[[str | None], httpx.Client]) -> httpx.Client:
    """An admin of every organization."""
    return client_as("admin")
