"""Slow clients cannot exhaust the API's pools: a trickling body is cut off with 408, an
upload waiting on the network holds no database connection, and a download its client
does not read holds none either. Real sockets against the real server."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg2.extensions
import pytest
import runner_support
from api_support import HOUSEHOLDS_CSV, token_of, upload
from longtask.api.settings import ApiSettings

from devcluster import seed
from longtask import constants

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

SOCKET_TIMEOUT = 20.0  # seconds: the longest any read of these tests waits


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _open(url: str, *, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(SOCKET_TIMEOUT)
    sock.connect(_address(url))
    return sock


def _head(method: str, path: str, role: str, extra: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: api", f"Authorization: Bearer {token_of(role)}",
             *[f"{k}: {v}" for k, v in extra.items()]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _response(sock: socket.socket) -> tuple[int, bytes]:
    """The status code and what came until the server closed (bounded by the timeout)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    assert data, "the server closed without answering"
    return int(data.split(b" ", 2)[1]), data


@pytest.fixture
def api_url(serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> str:
    """Short body bounds, so the tests see them hit."""
    return serve(api_settings.model_copy(update={
        "body_idle_timeout_seconds": 1.5, "body_timeout_seconds": 2.0,
        "body_min_bytes_per_second": 1024}))


def test_a_body_sent_a_byte_at_a_time_is_cut_off_with_408_and_the_connection_closed(
        api_url: str) -> None:
    body = b'{"type": "Export", "organization": "acme", "params": {}}'
    sock = _open(api_url)
    sock.sendall(_head("POST", "/v1/tasks/validate", "viewer", {
        "Content-Type": "application/json", "Content-Length": str(len(body))}))
    sent = 0
    with contextlib.suppress(OSError):  # the server may close while we still send
        for byte in body:
            sock.sendall(bytes([byte]))
            sent += 1
            time.sleep(0.25)
            if sent * 0.25 > 6:
                break

    status, data = _response(sock)

    assert status == 408, data[:300]
    assert b"request-timeout" in data
    assert b"connection: close" in data.lower()
    assert sent < len(body), "cut off before the body ended"
    exposition = httpx.get(f"{api_url}/metrics", timeout=SOCKET_TIMEOUT).text
    assert "longtask_api_body_timeouts_total 1.0" in exposition


def test_an_upload_whose_body_stalls_is_408_and_leaves_no_file(
        api_url: str, db: psycopg2.extensions.connection) -> None:
    boundary = "b0undary"
    start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
             "filename=\"h.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode() + HOUSEHOLDS_CSV
    sock = _open(api_url)
    sock.sendall(_head("POST", "/v1/files", "operator", {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(start) + 1000)}) + start)

    status, data = _response(sock)

    assert status == 408, data[:300]
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM longtask.files")
        assert cur.fetchone() == (0,), "nothing half-stored"


# ------------------------------------------------------------- ten slow clients at once

EXPORT_ROWS = 20_000


@pytest.fixture
def slow_settings(api_settings: ApiSettings) -> ApiSettings:
    """A small pool, so that ten clients holding a connection each would exhaust it, and
    body bounds long enough for the trickles to last the test."""
    return api_settings.model_copy(update={
        "db_pool_size": 3, "body_idle_timeout_seconds": 60, "body_timeout_seconds": 60,
        "body_min_bytes_per_second": 1})


@pytest.fixture
def slow_url(serve: Callable[[ApiSettings], str], slow_settings: ApiSettings) -> str:
    return serve(slow_settings)


@pytest.fixture
def big_export(slow_url: str, db: psycopg2.extensions.connection, seeded: dict[str, int],
               db_url: str) -> dict[str, Any]:
    """An Export of 20,000 submissions (a few MB of CSV), run by the real runner."""
    form = seed.submission_form(db, seeded["acme"])
    seed.submissions(db, seeded["acme"], form, EXPORT_ROWS,
                     dt.datetime(2017, 8, 1, tzinfo=dt.UTC), dt.datetime(2017, 9, 1, tzinfo=dt.UTC))
    with httpx.Client(base_url=slow_url, timeout=30,
                      headers={"Authorization": f"Bearer {token_of('operator')}"}) as client:
        response = client.post("/v1/tasks", json={
            "type": "Export", "organization": "acme",
            "params": {"form": "household-survey", "from": "2017-08-01", "to": "2017-08-31"}})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    definition = runner_support.task(task["type"], task["params"], organization="acme",
                                     uid=uuid.UUID(task["uid"]))
    assert runner_support.run_inline(db_url, definition) == constants.EXIT_DONE
    return task


@contextlib.contextmanager
def _slow_clients(url: str, export: str) -> Iterator[list[socket.socket]]:
    """Five uploads that sent their first bytes and then wait, and five downloads of the
    export that read nothing (a tiny receive window): all connected, none finished."""
    boundary = "b0undary"
    start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
             "filename=\"h.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode() + HOUSEHOLDS_CSV
    socks: list[socket.socket] = []
    try:
        for _ in range(5):
            sock = _open(url)
            sock.sendall(_head("POST", "/v1/files", "operator", {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(start) + 100_000)}) + start)
            socks.append(sock)
        for _ in range(5):
            sock = _open(url, receive_buffer=2048)
            sock.sendall(_head("GET", f"/v1/tasks/{export}/output", "viewer", {}))
            socks.append(sock)
        time.sleep(1)  # let the server take them up (no assertion depends on its speed)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_ten_slow_clients_leave_the_database_endpoints_answering(
        slow_url: str, big_export: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {token_of('operator')}"}
    with httpx.Client(base_url=slow_url, timeout=30, headers=headers) as client:
        stored = upload(client, HOUSEHOLDS_CSV)
        assert stored.status_code == 201, stored.text
        with _slow_clients(slow_url, big_export["name"]):
            answers = [client.get(f"/v1/files/{stored.json()['id']}"),
                       client.get(f"/v1/tasks/{big_export['name']}/errors"),
                       upload(client, HOUSEHOLDS_CSV),
                       client.get("/readyz")]

    assert [a.status_code for a in answers] == [200, 200, 201, 200], [
        a.text[:200] for a in answers]
