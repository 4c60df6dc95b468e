"""The runner against a database that does not answer (real processes, real PostgreSQL).

A TCP listener that accepts and never answers stands for a server that is not there yet
(or a firewall that swallows the handshake); a proxy between the runner and the real
PostgreSQL that stops relaying the server's answers stands for one that froze mid-run.
A SIGTERM must end the runner with the stop's code within its stop deadline, nothing may
be committed after the stop, and the connect timeout alone must end it with a clear error.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import runner_support as s

from devcluster import seed
from longtask import constants
from longtask.db import connect
from longtask.settings import RunnerSettings

UTC = dt.UTC
DEADLINE = 1.0  # the stop deadline these runners get, seconds
# What a loaded 2-core machine adds to a bound: interpreter start-up (about 1 s), exit.
MARGIN = 3.0
SMALL_CHUNKS = {"LONGTASK_RUNNER_CHUNK_INITIAL_ROWS": "300",
                "LONGTASK_RUNNER_CHUNK_MIN_ROWS": "300",
                "LONGTASK_RUNNER_CHUNK_MAX_ROWS": "300"}
_POLL = 0.1  # seconds a socket call of the helpers below waits before it looks again


class BlackHole:
    """A listener on 127.0.0.1 that accepts every connection and never sends a byte.

    Closes itself, and every connection it holds, after ``lifetime`` seconds at most.
    """

    def __init__(self, lifetime: float = 60) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(_POLL)
        self.port: int = self._sock.getsockname()[1]
        self.accepted = threading.Event()
        self.first_accept: float | None = None  # time.monotonic() of the first connection
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._until = time.monotonic() + lifetime
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, query: str = "") -> str:
        """A libpq URL naming this listener."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/collect{query}"

    def _serve(self) -> None:
        while not self._closed.is_set() and time.monotonic() < self._until:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self._held.append(conn)
            if self.first_accept is None:
                self.first_accept = time.monotonic()
            self.accepted.set()
        self._release()

    def _release(self) -> None:
        for conn in self._held:
            conn.close()
        self._sock.close()

    def close(self) -> None:
        """Stop accepting and drop every connection (waits a second at most)."""
        self._closed.set()
        self._thread.join(timeout=1)

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FreezingProxy:
    """Relays TCP from 127.0.0.1 to a PostgreSQL server until :meth:`freeze`.

    Frozen, it stops relaying the server's answers while the client's bytes still reach
    the server (a server that receives and never answers), and a new connection (a cancel
    request, say) is accepted and never answered. A client that closes its side has its
    server connection closed too, as a dying client's connection would be. Everything
    ends at :meth:`close` or after ``lifetime`` seconds.
    """

    def __init__(self, upstream: tuple[str, int], lifetime: float = 60) -> None:
        self._upstream = upstream
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(_POLL)
        self.port: int = self._sock.getsockname()[1]
        self.frozen = threading.Event()
        self.accepted_frozen = threading.Event()  # a connection came in while frozen
        self._closed = threading.Event()
        self._until = time.monotonic() + lifetime
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def _keep(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(_POLL)
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _live(self) -> bool:
        return not self._closed.is_set() and time.monotonic() < self._until

    def _serve(self) -> None:
        while self._live():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            self._keep(client)
            if self.frozen.is_set():
                self.accepted_frozen.set()
                continue
            server = self._keep(socket.create_connection(self._upstream, timeout=5))
            self._spawn(self._to_server, client, server)
            self._spawn(self._to_client, server, client)
        self._closed.set()
        self._sock.close()

    def _to_server(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while self._live():
                try:
                    data = client.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                server.sendall(data)
        except OSError:
            pass
        # The client is gone: so is its server connection (the server rolls back).
        server.close()
        client.close()

    def _to_client(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while self._live():
                if self.frozen.is_set():
                    self._closed.wait(_POLL)  # the answers stay in the server's socket
                    continue
                try:
                    data = server.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    client.shutdown(socket.SHUT_WR)
                    break
                if self.frozen.is_set():
                    continue  # read just as the freeze came: never delivered
                client.sendall(data)
        except OSError:
            pass

    def freeze(self) -> None:
        """From now on the server answers nothing, as far as the client can tell."""
        self.frozen.set()

    def close(self) -> None:
        """Drop every connection and stop (each thread waits a poll interval at most)."""
        self._closed.set()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            sock.close()
        for thread in threads:
            thread.join(timeout=1)

    def __enter__(self) -> FreezingProxy:
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self.close()


def through(db_url: str, port: int) -> str:
    """``db_url`` with its host and port replaced by 127.0.0.1:``port``."""
    parts = urllib.parse.urlsplit(db_url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def upstream_of(db_url: str) -> tuple[str, int]:
    """The (host, port) of a TCP libpq URL."""
    parts = urllib.parse.urlsplit(db_url)
    assert parts.hostname and parts.port, f"the test needs a TCP database URL: {db_url}"
    return parts.hostname, parts.port


def events(log: Path) -> list[dict[str, Any]]:
    """The runner's JSON log lines (other lines, if any, are left out)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def export_task() -> s.TaskDefinition:
    return s.task("Export", {"form": "household-survey", "from": "2015-01-01",
                             "to": "2018-12-31"})


def wait_for(what: str, condition: Any, seconds: float, interval: float = 0.02) -> None:
    """Poll ``condition()`` until true; fails naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def written(db: Any, uid: uuid.UUID) -> tuple[Any, ...]:
    """What the task has committed: checkpoint (chunks, done, cursor) and its parts."""
    with db.cursor() as cur:
        cur.execute("SELECT chunks, done, cursor::text FROM longtask.tasks WHERE uid = %s",
                    (uid,))
        rec = cur.fetchone()
        cur.execute("SELECT count(*), coalesce(sum(rows), 0) FROM longtask.export_parts "
                    "WHERE task_uid = %s", (uid,))
        parts = cur.fetchone()
    return (*rec, *parts)


def runner_sessions(db: Any) -> list[str]:
    """States of the runner sessions the server still has."""
    with db.cursor() as cur:
        cur.execute("SELECT state FROM pg_stat_activity "
                    "WHERE application_name LIKE 'longtask-runner%%'")
        return [r[0] for r in cur.fetchall()]


@pytest.fixture
def survey(db: Any) -> int:
    org = s.create_org(db)
    form = seed.submission_form(db, org)
    seed.submissions(db, org, form, 30_000, dt.datetime(2015, 1, 1, tzinfo=UTC),
                     dt.datetime(2019, 1, 1, tzinfo=UTC))
    return form



def stop_and_time(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM ``proc`` and wait (the stop deadline plus 10 s at most): its exit code and
    the seconds from the signal to its exit."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=DEADLINE + 10)
    return code, time.monotonic() - sent

@pytest.mark.timeout(30)
def test_sigterm_while_connecting_exits_with_the_stop_code_by_the_deadline(
        tmp_path: Path) -> None:
    log = tmp_path / "runner.log"
    with BlackHole() as hole:
        proc = s.spawn(hole.url(), export_task(), log=log, env={
            "LONGTASK_RUNNER_CONNECT_TIMEOUT_SECONDS": "60",
            "LONGTASK_RUNNER_STOP_DEADLINE_SECONDS": str(DEADLINE)})
        try:
            assert hole.accepted.wait(15), "the runner never connected"
            time.sleep(0.2)  # well inside libpq's wait for the server's first answer
            code, took = stop_and_time(proc)
        finally:
            proc.kill()
            proc.wait(timeout=5)
    assert code == constants.EXIT_STOPPED, log.read_text()
    assert took < DEADLINE + MARGIN, f"took {took:.2f} s"
    names = [e["event"] for e in events(log)]
    assert "stop_requested" in names and "stop_deadline_passed" in names, names


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("query", "setting"), [("", "2"), ("?connect_timeout=2", "60")],
                         ids=["setting", "the URL's value wins"])
def test_the_connect_timeout_alone_ends_a_runner_facing_a_black_hole(
        tmp_path: Path, query: str, setting: str) -> None:
    log = tmp_path / "runner.log"
    with BlackHole() as hole:
        proc = s.spawn(hole.url(query), export_task(), log=log,
                       env={"LONGTASK_RUNNER_CONNECT_TIMEOUT_SECONDS": setting})
        try:
            code = proc.wait(timeout=2 + 15)
            ended = time.monotonic()
        finally:
            proc.kill()
            proc.wait(timeout=5)
        assert hole.first_accept is not None, "the runner never connected"
        waited = ended - hole.first_accept
    assert code == 1, log.read_text()
    assert 1.5 < waited < 2 + MARGIN, f"waited {waited:.2f} s after its connection was accepted"
    lines = [e for e in events(log) if e["event"] == "database_connect_failed"]
    assert len(lines) == 1, log.read_text()
    assert "timeout" in lines[0]["error"], lines[0]
    assert lines[0]["level"] == "error"
    assert "runner_crashed" not in log.read_text(), "a clear error, not a traceback"


@pytest.mark.timeout(60)
def test_sigterm_while_the_server_stops_answering_mid_run_commits_nothing_after(
        db: Any, db_url: str, survey: int, tmp_path: Path) -> None:
    task = export_task()
    log = tmp_path / "runner.log"
    with FreezingProxy(upstream_of(db_url)) as proxy:
        proc = s.spawn(through(db_url, proxy.port), task, log=log, env={
            **SMALL_CHUNKS, "LONGTASK_RUNNER_STOP_DEADLINE_SECONDS": str(DEADLINE)})
        try:
            wait_for("three chunks", lambda: (proc.poll() is None and
                     (s.record_or_none(db, task.uid, "chunks") or 0) >= 3), 30, 0.005)
            proxy.freeze()
            # A COMMIT the runner sent before the freeze still reaches the server: wait
            # until what is committed holds still, then that is all there may ever be.
            settled: list[Any] = [written(db, task.uid)]

            def holds_still() -> bool:
                time.sleep(0.3)
                settled.append(written(db, task.uid))
                return settled[-1] == settled[-2]

            wait_for("what is committed to hold still", holds_still, 10, 0)
            before = settled[-1]
            assert proc.poll() is None, "the runner ended before the stop"
            code, took = stop_and_time(proc)
        finally:
            proc.kill()
            proc.wait(timeout=5)
        assert proxy.accepted_frozen.is_set(), "the stop sent no cancel request"
        # The runner's connections are closed, so are the proxy's to the server: the server
        # rolls back what the runner left open.
        wait_for("the runner's sessions to end", lambda: not runner_sessions(db), 10, 0.05)
    assert code == constants.EXIT_STOPPED, log.read_text()
    assert took < DEADLINE + MARGIN, f"took {took:.2f} s"
    names = [e["event"] for e in events(log)]
    assert "stop_requested" in names and "stop_deadline_passed" in names, names
    assert written(db, task.uid) == before, "something was committed after the stop"
    chunks, done, _, parts, part_rows = before
    assert 0 < done == part_rows and parts == chunks
    # The task row's lock went with the session: a new runner takes over and finishes.
    assert s.run_inline(db_url, task) == constants.EXIT_DONE
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.submissions WHERE form_id = %s", (survey,))
        total = cur.fetchone()[0]
    assert s.record(db, task.uid)["done"] == total == written(db, task.uid)[4]


# Run in a child process: were the cancel to hold the interpreter lock, the process would
# hang beyond the reach of any timeout of its own; the test kills the child instead.
_CANCEL_CHILD = """
import os, sys, threading, time
from longtask.db import connect
from longtask.runner.engine import StopToken

conn = connect(sys.argv[1])
print("connected", flush=True)
sys.stdin.readline()  # the proxy froze
stop = StopToken()
stop.bind(conn)
started = time.monotonic()
stop.request("test")
took = time.monotonic() - started
time.sleep(0.5)  # the cancel goes out and waits for its answer
spins, until = 0, time.monotonic() + 0.3
while time.monotonic() < until:
    spins += 1
waiting = any(t.name == "longtask-cancel" and t.is_alive() for t in threading.enumerate())
print(f"{took:.4f} {spins} {waiting}", flush=True)
os._exit(0)
"""


@pytest.mark.timeout(30)
def test_a_cancel_the_server_never_answers_blocks_no_other_thread(db_url: str) -> None:
    with FreezingProxy(upstream_of(db_url)) as proxy:
        child = subprocess.Popen([sys.executable, "-c", _CANCEL_CHILD,
                                  through(db_url, proxy.port)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline().strip() == "connected"
            proxy.freeze()
            child.stdin.write("go\n")
            child.stdin.flush()
            out, _ = child.communicate(timeout=10)
        finally:
            child.kill()
            child.wait(timeout=5)
        assert proxy.accepted_frozen.is_set(), "no cancel request was sent"
    took, spins, waiting = out.split()
    assert float(took) < 0.5, "request() waited for the cancel"
    # The cancel waits in libpq for an answer that never comes; meanwhile the child's
    # other thread runs Python code (psycopg2's own cancel holds the interpreter lock).
    assert waiting == "True", "the cancel did not wait: the test proves nothing"
    assert int(spins) > 1000


def test_every_connection_gets_the_settings_unless_the_url_sets_them(db_url: str) -> None:
    settings = RunnerSettings(connect_timeout_seconds=7, keepalives_idle_seconds=11,
                              keepalives_interval_seconds=3, keepalives_count=4,
                              tcp_user_timeout_seconds=25)
    conn = connect(db_url, options=settings.libpq_options())
    try:
        params = conn.get_dsn_parameters()
        assert (params["connect_timeout"], params["keepalives_idle"],
                params["keepalives_interval"], params["keepalives_count"],
                params["tcp_user_timeout"]) == ("7", "11", "3", "4", "25000")
        # libpq set them on the socket itself.
        sock = socket.socket(fileno=conn.fileno())
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 11
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 25000
        finally:
            sock.detach()  # the descriptor stays libpq's
    finally:
        conn.close()
    sep = "&" if "?" in db_url else "?"
    conn = connect(f"{db_url}{sep}keepalives_idle=5&connect_timeout=3",
                   options=settings.libpq_options())
    try:
        params = conn.get_dsn_parameters()
        assert (params["keepalives_idle"], params["connect_timeout"],
                params["keepalives_count"]) == ("5", "3", "4")
    finally:
        conn.close()


@pytest.mark.parametrize(("field", "value"), [
    ("connect_timeout_seconds", 1), ("keepalives_idle_seconds", 0),
    ("keepalives_count", 0), ("tcp_user_timeout_seconds", -1),
    ("stop_deadline_seconds", 0), ("stop_deadline_seconds", 30),
])
def test_connection_settings_out_of_range_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RunnerSettings(**{field: value})
