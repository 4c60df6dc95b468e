"""A throwaway PostgreSQL cluster for tests and the local demo.

``initdb`` + ``pg_ctl`` from the PostgreSQL 15 binaries on this machine, on a loopback port
chosen here, trust authentication, data in a temporary folder removed on stop. PostgreSQL
refuses to run as root, so when started by root the server runs as ``nobody``.

Command line: ``python -m devcluster.postgres`` prints the URL and serves until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_BIN_DIRS = tuple(f"/usr/lib/postgresql/{v}/bin" for v in (15, 16, 17))


class PostgresNotFound(RuntimeError):
    """No ``initdb``/``pg_ctl`` on this machine: install the ``postgresql-15`` package."""


def find_bindir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``; :class:`PostgresNotFound`."""
    for candidate in _BIN_DIRS:
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise PostgresNotFound(
        "PostgreSQL server binaries not found; install them with "
        "'apt-get install -y postgresql-15' (make setup does this)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A running throwaway cluster; ``url`` is a libpq URL to its ``postgres`` database."""

    datadir: Path
    port: int
    bindir: Path
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, dbname: str) -> str:
        """The libpq URL of database ``dbname`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its data folder."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w",
                  "-t", "30", "stop"], self.user)
        pidfile = self.datadir / "postmaster.pid"
        if pidfile.exists():  # pg_ctl failed: kill the postmaster ourselves
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text().splitlines()[0]), signal.SIGKILL)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def with_user(url: str, user: str, password: str | None = None) -> str:
    """``url`` (a libpq URL) logging in as ``user`` (with ``password``) instead."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    login = urllib.parse.quote(user, safe="")
    if password is not None:
        login += ":" + urllib.parse.quote(password, safe="")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{login}@{host}"))


LOGIN_ROLES: dict[str, str] = {"api": "longtask_api", "operator": "longtask_operator",
                               "runner": "longtask_runner"}
"""Component -> the group role (longtask/db/roles.py's defaults) its login role joins."""


def make_login_roles(admin_url: str, prefix: str = "longtask_dev") -> dict[str, str]:
    """Login roles ``<prefix>_api``, ``_operator``, ``_runner`` on the server of
    ``admin_url`` (a superuser's), each a member of its component's group role only, with a
    new random password; returns component -> ``"role:password"``.

    The group roles must exist (migration 0003 makes them). Re-runnable: an existing login
    role gets the new password.
    """
    import secrets

    import psycopg2

    made: dict[str, str] = {}
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for component, group in LOGIN_ROLES.items():
                role, password = f"{prefix}_{component}", secrets.token_hex(16)
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                            "PASSWORD %s", (password,))
                cur.execute(f"GRANT {group} TO {role}")
                made[component] = f"{role}:{password}"
    finally:
        conn.close()
    return made


def _run(cmd: list[str], user: str | None) -> None:
    subprocess.run(cmd, check=True, user=user, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=120)


def start(*, port: int | None = None) -> PostgresServer:
    """Create and start a cluster; returns once it accepts connections.

    Raises :class:`PostgresNotFound`, or ``subprocess.CalledProcessError`` with the server's
    message when initdb or start fails.
    """
    bindir = find_bindir()
    user = "nobody" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="longtask-pg-"))
    datadir = root / "data"
    sockdir = root / "sock"
    sockdir.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chmod(root, 0o755)
        for path in (root, sockdir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    _run([str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust",
          "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], user)
    port = port or free_port()
    # Settings for a throwaway server: no durability wait, enough connections for the
    # parallel runner processes that the chaos tests start.
    options = (f"-c port={port} -c listen_addresses=127.0.0.1 "
               f"-c unix_socket_directories={sockdir} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
               "-c shared_buffers=256MB -c log_min_messages=warning")
    _run([str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(root / "server.log"),
          "-o", options, "-w", "-t", "60", "start"], user)
    server = PostgresServer(datadir=datadir, port=port, bindir=bindir, user=user)
    _wait_ready(server, timeout=30)
    return server


def _wait_ready(server: PostgresServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def running() -> Iterator[PostgresServer]:
    """Context manager: a started cluster, stopped and removed on exit."""
    server = start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def migrated(env: str = "LONGTASK_BENCH_DATABASE_URL") -> Iterator[str]:
    """Context manager: the URL of a migrated database, the one ``$env`` names (a
    superuser's) or one on a throwaway cluster, stopped and removed on exit; what the
    benchmarks run against."""
    from longtask.db.migrate import upgrade

    given = os.environ.get(env)
    if given:
        upgrade(given)
        yield given
        return
    with running() as server:
        upgrade(server.url)
        yield server.url


def main() -> None:
    """Serve a throwaway cluster until SIGINT, SIGTERM or SIGHUP; prints its URL, then
    stops the server and removes its data."""
    from devcluster import signals

    with signals.stop_on_signals(), contextlib.suppress(signals.Interrupted), \
            running() as server:
        print(server.url, flush=True)
        signals.wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
