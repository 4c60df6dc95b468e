"""The ``longtask`` command under test: the installed executable run as a subprocess
against the whole stack (PostgreSQL, the local Kubernetes cluster with its real node, the
operator and the API: :mod:`devcluster.stack`), one stack for the package's tests.

``longtask_cli(*args, org=..., env=..., timeout=...)`` runs ``.venv/bin/longtask`` with
``LONGTASK_API_URL`` and ``LONGTASK_TOKEN`` of that organization's operator token, in a
config folder of the test's own, and returns the finished process (stdout, stderr, code).
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devcluster import examples, stack

ORG = examples.ORGANIZATION          # acme: the example forms and files
CASES_ORG = "cli-cases"              # the three cases, in an organization of their own
LONGTASK = Path(sys.executable).parent / "longtask"
RUN_TIMEOUT = 120.0                  # seconds for one command, unless a test says less

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Stack]:
    """The whole stack, with acme's examples and the cases' organization."""
    running = stack.start(Path(tmp_path_factory.mktemp("stack")),
                          organizations=[ORG, CASES_ORG], with_examples=True)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def example_files(live: stack.Stack) -> Path:
    """The example files of acme (``villages.csv``, ``households.csv``, ...)."""
    return live.workdir / "examples"


def run_cli(args: tuple[str, ...], env: dict[str, str], cwd: Path, timeout: float,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the executable; a run past ``timeout`` fails the test (subprocess raises)."""
    assert LONGTASK.exists(), f"{LONGTASK} is missing: make venv installs the cli extra"
    return subprocess.run([str(LONGTASK), *args], env=env, cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


def bare_env(folder: Path) -> dict[str, str]:
    """The environment of a run without credentials: PATH, HOME and a config folder in
    ``folder`` (``$XDG_CONFIG_HOME``)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONSAFEPATH")}
    env.update({"HOME": str(folder / "home"), "XDG_CONFIG_HOME": str(folder / "config")})
    return env


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """:func:`bare_env` in the test's own folder."""
    return bare_env(tmp_path)


@pytest.fixture(scope="module")
def cli_env_module(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """:func:`bare_env` in a folder of the module's."""
    return bare_env(Path(tmp_path_factory.mktemp("cli-env")))


@pytest.fixture
def longtask_cli(live: stack.Stack, cli_env: dict[str, str], tmp_path: Path) -> Run:
    """``longtask_cli(*args, org=ORG, env=None, timeout=RUN_TIMEOUT, stdin=None)``."""

    def run(*args: str, org: str | None = ORG, env: dict[str, str] | None = None,
            timeout: float = RUN_TIMEOUT, stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        full = dict(cli_env)
        if org is not None:
            full.update({"LONGTASK_API_URL": live.api_url, "LONGTASK_TOKEN": live.tokens[org]})
        full.update(env or {})
        return run_cli(args, full, tmp_path, timeout, stdin)

    return run


class _Corrupting(http.server.BaseHTTPRequestHandler):
    """Forwards a GET to the API and flips one bit of an output's first byte on the way,
    keeping its headers and length: a download damaged in transit."""

    upstream = ""

    def do_GET(self) -> None:
        with httpx.Client(base_url=self.upstream, timeout=60) as client:
            answer = client.get(self.path, headers={
                "Authorization": self.headers.get("Authorization", "")})
        body = answer.content
        if "/output" in self.path and body:
            body = bytes([body[0] ^ 0x01]) + body[1:]
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in ("transfer-encoding", "connection", "content-length",
                                   "content-encoding", "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def corrupting_proxy(live: stack.Stack) -> Iterator[str]:
    """The base URL of a loopback HTTP proxy to the API that damages output bodies."""
    handler = type("Handler", (_Corrupting,), {"upstream": live.api_url})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="corrupting-proxy",
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
