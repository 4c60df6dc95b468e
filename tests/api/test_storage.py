"""Storage per organization through the real API: the quota on stored bytes (507 with the
numbers, nothing half-stored, racing uploads, one organization's usage apart from
another's) and the retention (expiresAt, removal once the last task ended and never
while one may resume or roll back, the audit, 410 after).

The retention's passes are the operator's own code (``longtask.operator.retention``) run
in the test against the same API server and database; the phases it reads are written
through the status subresource, as the operator writes them, because reaching each for
real needs the whole lifecycle (``tests/operator_cluster/test_retention.py`` runs it in
the operator process).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg2.extensions
import pytest
from api_support import HOUSEHOLDS_CSV, baseline_request, problem, upload
from longtask.api.settings import ApiSettings
from longtask.operator.kube import Kube
from longtask.operator.retention import Retention
from longtask.operator.settings import OperatorSettings

from longtask import storage
from longtask.constants import GROUP, PLURAL, VERSION
from longtask.db import Pool

QUOTA = 4000
RETENTION = 1.0  # seconds: real time, made short
WAIT = 10.0  # seconds: the bound of every wait here


def households(size: int) -> bytes:
    """A households CSV of exactly ``size`` bytes."""
    data = bytearray(HOUSEHOLDS_CSV)
    n = 3
    while len(data) < size:
        data += f"H-{n},Name {n},1,\n".encode()
        n += 1
    return bytes(data[:size - 1]) + b"\n"


def used_bytes(db: psycopg2.extensions.connection, org: str) -> int:
    with db.cursor() as cur:
        cur.execute("SELECT used_bytes FROM longtask.storage_usage WHERE organization = %s",
                    (org,))
        row = cur.fetchone()
    db.rollback()
    return int(row[0]) if row else 0


def stored_files(db: psycopg2.extensions.connection, org: str) -> tuple[int, int]:
    """(file rows, block rows) of the organization, complete or not."""
    with db.cursor() as cur:
        cur.execute("SELECT count(*), (SELECT count(*) FROM longtask.file_blocks b "
                    "JOIN longtask.files f ON f.id = b.file_id WHERE f.organization = %s) "
                    "FROM longtask.files WHERE organization = %s", (org, org))
        files, blocks = cur.fetchone()  # type: ignore[misc]
    db.rollback()
    return int(files), int(blocks)


@pytest.fixture
def quota_url(serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> str:
    """An API whose organizations may store QUOTA bytes, unused files kept RETENTION s."""
    return serve(api_settings.model_copy(update={
        "storage_quota_bytes": QUOTA, "unused_file_retention_seconds": RETENTION}))


@pytest.fixture
def as_role(quota_url: str) -> Iterator[Callable[[str], httpx.Client]]:
    from api_support import token_of
    clients: list[httpx.Client] = []

    def make(role: str) -> httpx.Client:
        client = httpx.Client(base_url=quota_url, timeout=30,
                              headers={"Authorization": f"Bearer {token_of(role)}"})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# ------------------------------------------------------------------------------ quota


def test_an_upload_past_the_quota_is_507_with_the_numbers_and_nothing_stored(
        as_role: Callable[[str], httpx.Client], db: psycopg2.extensions.connection) -> None:
    acme = as_role("operator")
    first = upload(acme, households(3000))
    assert first.status_code == 201, first.text
    before = stored_files(db, "acme")

    body = problem(upload(acme, households(1500)), 507)

    assert body["type"].endswith("/storage-quota-exceeded")
    assert (body["usedBytes"], body["quotaBytes"], body["fileBytes"]) == (3000, QUOTA, 1500)
    assert body["organization"] == "acme"
    assert "3000" in body["detail"] and "4000" in body["detail"], body["detail"]
    assert stored_files(db, "acme") == before, "the refused upload left rows behind"
    assert used_bytes(db, "acme") == 3000
    usage = acme.get("/v1/storage").json()
    assert usage == {"organization": "acme", "usedBytes": 3000, "quotaBytes": QUOTA,
                     "availableBytes": 1000}


def test_a_file_far_past_the_quota_is_refused_while_it_streams(
        as_role: Callable[[str], httpx.Client], db: psycopg2.extensions.connection) -> None:
    body = problem(upload(as_role("operator"), households(200_000)), 507)

    assert body["fileBytesPartial"] is True
    assert QUOTA < body["fileBytes"] < 200_000, "refused before the whole file was stored"
    assert stored_files(db, "acme") == (0, 0)
    assert used_bytes(db, "acme") == 0


def test_a_declared_length_past_the_room_is_refused_before_the_body_is_read(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings,
        db: psycopg2.extensions.connection) -> None:
    from api_support import token_of
    url = serve(api_settings.model_copy(update={
        "storage_quota_bytes": QUOTA, "max_upload_bytes": 4 << 20}))
    head = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"h.csv\"\r\n\r\n"
    tail = b"\r\n--b--\r\n"
    piece, pieces = b"x" * (64 << 10), 32  # 2 MiB: more than the room and the form's slack

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(pieces):
            yield piece
        yield tail

    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/v1/files", content=body(), headers={
            "Authorization": f"Bearer {token_of('operator')}",
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(len(head) + pieces * len(piece) + len(tail))})

    refused = problem(response, 507)
    assert "Content-Length" in refused["detail"] and refused["fileBytesPartial"] is True
    assert refused["fileBytes"] > QUOTA
    assert stored_files(db, "acme") == (0, 0)


def test_export_outputs_count_against_the_same_quota(
        as_role: Callable[[str], httpx.Client], db: psycopg2.extensions.connection) -> None:
    store_export_output(db, "acme", uuid.uuid4(), 2500)

    body = problem(upload(as_role("operator"), households(2000)), 507)

    assert body["usedBytes"] == 2500


def test_one_organization_at_its_quota_does_not_stop_another(
        as_role: Callable[[str], httpx.Client], db: psycopg2.extensions.connection) -> None:
    acme, globex = as_role("operator"), as_role("other")
    assert upload(acme, households(QUOTA)).status_code == 201
    problem(upload(acme, households(100)), 507)

    response = upload(globex, households(3000))

    assert response.status_code == 201, response.text
    assert (used_bytes(db, "acme"), used_bytes(db, "globex")) == (QUOTA, 3000)


def test_an_organization_of_its_own_quota_is_bound_by_it(
        as_role: Callable[[str], httpx.Client], db: psycopg2.extensions.connection) -> None:
    storage.set_quota(db, "globex", 500)

    body = problem(upload(as_role("other"), households(1000)), 507)

    assert body["quotaBytes"] == 500
    assert upload(as_role("operator"), households(1000)).status_code == 201, (
        "acme keeps the default quota")


def test_two_uploads_racing_cannot_both_pass_the_quota(
        quota_url: str, db: psycopg2.extensions.connection) -> None:
    """Both start with room for either, and both have sent half their file before either
    completes: exactly one is stored. (That the usage row's lock is what keeps them apart,
    whatever the timing, is shown in tests/runner/test_storage_quota.py.)"""
    from api_support import token_of
    size = 2500
    # The organization's usage row exists already, as it does after its first upload: the
    # row's lock, not the first insert of it, is what has to keep them apart.
    storage.set_quota(db, "acme", None)
    both_streaming = threading.Barrier(2, timeout=WAIT)

    def body(data: bytes) -> Iterator[bytes]:
        head = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"h.csv\"\r\n"
                b"Content-Type: text/csv\r\n\r\n")
        yield head + data[:size // 2]
        both_streaming.wait()
        yield data[size // 2:] + b"\r\n--b--\r\n"

    results: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=quota_url, timeout=30) as client:
            response = client.post(
                "/v1/files", content=body(households(size)),
                headers={"Authorization": f"Bearer {token_of('operator')}",
                         "Content-Type": "multipart/form-data; boundary=b"})
        results.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=WAIT * 2)

    assert sorted(results) == [201, 507], results
    assert used_bytes(db, "acme") == size
    assert stored_files(db, "acme")[0] == 1


# -------------------------------------------------------------------------- retention


def store_export_output(db: psycopg2.extensions.connection, org: str, uid: uuid.UUID,
                        size: int, name: str = "t", namespace: str = "default") -> None:
    """An export's record and one part of ``size`` bytes, as the runner writes them."""
    data = "x" * (size - 1) + "\n"
    with db.cursor() as cur:
        cur.execute("INSERT INTO longtask.tasks (uid, name, namespace, type, organization, "
                    "params) VALUES (%s, %s, %s, 'Export', %s, '{}')",
                    (uid, name, namespace, org))
        cur.execute("INSERT INTO longtask.export_parts (task_uid, part, rows, data, sha256) "
                    "VALUES (%s, 1, 1, %s, %s)",
                    (uid, data, hashlib.sha256(data.encode()).hexdigest()))
    db.commit()


@pytest.fixture
def retention(db_url: str, api_namespace: str, kube_api: Any) -> Iterator[Retention]:
    """The operator's retention over this test's namespace and database (RETENTION s)."""
    settings = OperatorSettings(
        runner_image="longtask-runner:test", standalone=True, watch_namespaces=api_namespace,
        storage_retention_seconds=RETENTION, unused_file_retention_seconds=RETENTION,
        retention_claim_grace_seconds=0)
    keeper = Retention(settings, Kube(kube_api), Pool(db_url, 1, application_name="test"))
    yield keeper
    keeper.pool.close()


def set_phase(custom_objects: Any, namespace: str, name: str, phase: str,
              finished: bool = False, state: str | None = None) -> None:
    """Write ``status.phase`` as the operator does (and ``finishedAt`` for a final one)."""
    status: dict[str, Any] = {"phase": phase}
    if finished:
        status["finishedAt"] = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    if state is not None:
        custom_objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": {"state": state}})
    custom_objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status})


def passes_until(keeper: Retention, done: Callable[[], bool]) -> None:
    """Run retention passes until ``done()``, for at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, f"not done within {WAIT} s"
        keeper.run_once()
        time.sleep(0.2)


def passes_for(keeper: Retention, seconds: float) -> None:
    """Run retention passes for ``seconds`` (well past the retention)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        keeper.run_once()
        time.sleep(0.2)


def create_task_of(client: httpx.Client) -> tuple[str, str]:
    """(file id, task name) of a BaselineUpload created through the API."""
    file_id = upload(client, HOUSEHOLDS_CSV).json()["id"]
    response = client.post("/v1/tasks", json=baseline_request(file_id))
    assert response.status_code == 201, response.text
    return file_id, response.json()["name"]


def removals(db: psycopg2.extensions.connection, object_id: str) -> list[tuple[Any, ...]]:
    with db.cursor() as cur:
        cur.execute("SELECT kind, organization, bytes, reason FROM longtask.storage_removals "
                    "WHERE object_id = %s", (object_id,))
        rows = cur.fetchall()
    db.rollback()
    return rows


def test_an_upload_says_when_it_expires_and_a_task_clears_it(
        as_role: Callable[[str], httpx.Client]) -> None:
    acme = as_role("operator")
    before = dt.datetime.now(dt.UTC)
    uploaded = upload(acme, HOUSEHOLDS_CSV).json()
    expires = dt.datetime.fromisoformat(uploaded["expiresAt"])
    assert before - dt.timedelta(seconds=5) < expires - dt.timedelta(seconds=RETENTION) \
        < before + dt.timedelta(seconds=5), uploaded["expiresAt"]

    assert acme.post("/v1/tasks", json=baseline_request(uploaded["id"])).status_code == 201

    assert acme.get(f"/v1/files/{uploaded['id']}").json()["expiresAt"] is None


def test_an_unused_file_is_removed_after_its_retention_audited_and_then_gone(
        as_role: Callable[[str], httpx.Client], retention: Retention,
        db: psycopg2.extensions.connection) -> None:
    acme = as_role("operator")
    file_id = upload(acme, HOUSEHOLDS_CSV).json()["id"]

    passes_until(retention, lambda: bool(removals(db, file_id)))

    [(kind, org, size, reason)] = removals(db, file_id)
    assert (kind, org, size) == ("file", "acme", len(HOUSEHOLDS_CSV))
    assert "no task used it" in reason
    body = problem(acme.get(f"/v1/files/{file_id}"), 410)
    assert body["type"].endswith("/removed-by-retention") and body["removedAt"]
    assert used_bytes(db, "acme") == 0
    assert stored_files(db, "acme") == (1, 0), "the row stays as a tombstone, blocks go"
    problem(as_role("other").get(f"/v1/files/{file_id}"), 404)
    refused = problem(acme.post("/v1/tasks", json=baseline_request(file_id)), 422)
    assert any(e.get("pointer") == "#/params/fileId" for e in refused["errors"]), refused


def test_a_file_is_removed_after_its_task_ended(
        as_role: Callable[[str], httpx.Client], retention: Retention, custom_objects: Any,
        api_namespace: str, db: psycopg2.extensions.connection) -> None:
    acme = as_role("operator")
    file_id, name = create_task_of(acme)
    set_phase(custom_objects, api_namespace, name, "Running")
    passes_for(retention, 3 * RETENTION)
    assert not removals(db, file_id)

    set_phase(custom_objects, api_namespace, name, "Succeeded", finished=True)
    retention.run_once()
    assert acme.get(f"/v1/files/{file_id}").json()["expiresAt"] is not None

    passes_until(retention, lambda: bool(removals(db, file_id)))
    assert name in removals(db, file_id)[0][3]
    problem(acme.get(f"/v1/files/{file_id}"), 410)


def test_a_paused_task_keeps_its_file(
        as_role: Callable[[str], httpx.Client], retention: Retention, custom_objects: Any,
        api_namespace: str, db: psycopg2.extensions.connection) -> None:
    acme = as_role("operator")
    file_id, name = create_task_of(acme)
    set_phase(custom_objects, api_namespace, name, "Paused", state="Paused")

    passes_for(retention, 3 * RETENTION)

    assert not removals(db, file_id)
    described = acme.get(f"/v1/files/{file_id}")
    assert described.status_code == 200 and described.json()["expiresAt"] is None


def test_a_terminated_task_keeps_its_file_until_its_rollback_finished(
        as_role: Callable[[str], httpx.Client], retention: Retention, custom_objects: Any,
        api_namespace: str, db: psycopg2.extensions.connection) -> None:
    acme = as_role("operator")
    file_id, name = create_task_of(acme)
    set_phase(custom_objects, api_namespace, name, "RollingBack", state="Terminated")

    passes_for(retention, 3 * RETENTION)
    assert not removals(db, file_id)

    set_phase(custom_objects, api_namespace, name, "RolledBack", finished=True)
    passes_until(retention, lambda: bool(removals(db, file_id)))


def test_a_file_stays_while_any_task_using_it_may_resume(
        as_role: Callable[[str], httpx.Client], retention: Retention, custom_objects: Any,
        api_namespace: str, db: psycopg2.extensions.connection) -> None:
    acme = as_role("operator")
    file_id, first = create_task_of(acme)
    second = acme.post("/v1/tasks", json=baseline_request(file_id)).json()["name"]
    set_phase(custom_objects, api_namespace, first, "Failed", finished=True)
    set_phase(custom_objects, api_namespace, second, "Queued")

    passes_for(retention, 3 * RETENTION)

    assert not removals(db, file_id)


def test_an_export_output_says_when_it_goes_and_is_gone_after(
        as_role: Callable[[str], httpx.Client], retention: Retention, custom_objects: Any,
        api_namespace: str, db: psycopg2.extensions.connection) -> None:
    acme = as_role("operator")
    created = acme.post("/v1/tasks", json={
        "type": "Export", "organization": "acme", "state": "Paused",
        "params": {"form": "Households", "from": "2020-01-01", "to": "2020-01-31"}})
    assert created.status_code == 201, created.text
    name, uid = created.json()["name"], created.json()["uid"]
    store_export_output(db, "acme", uuid.UUID(uid), 1200, name, api_namespace)
    set_phase(custom_objects, api_namespace, name, "Paused", state="Paused")
    passes_for(retention, 3 * RETENTION)
    assert acme.get(f"/v1/tasks/{name}/output/info").json() == {
        "task": name, "bytes": 1200, "expiresAt": None}

    set_phase(custom_objects, api_namespace, name, "Succeeded", finished=True)
    retention.run_once()
    info = acme.get(f"/v1/tasks/{name}/output/info").json()
    assert info["expiresAt"] is not None, info
    output = acme.get(f"/v1/tasks/{name}/output")
    if output.status_code == 200:  # not removed yet in this instant
        assert output.headers["LongTask-Output-Expires-At"]
    assert used_bytes(db, "acme") == 1200

    passes_until(retention, lambda: bool(removals(db, uid)))

    [(kind, org, size, _reason)] = removals(db, uid)
    assert (kind, org, size) == ("export-output", "acme", 1200)
    problem(acme.get(f"/v1/tasks/{name}/output"), 410)
    problem(acme.get(f"/v1/tasks/{name}/output/info"), 410)
    problem(as_role("other").get(f"/v1/tasks/{name}/output/info"), 404)
    assert used_bytes(db, "acme") == 0


def test_another_organizations_usage_is_not_shown(
        as_role: Callable[[str], httpx.Client]) -> None:
    problem(as_role("other").get("/v1/storage", params={"organization": "acme"}), 403)
    assert as_role("other").get("/v1/storage").json()["organization"] == "globex"
