"""Helpers for the API tests: identities, uploads, problem-details checks."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg2
import psycopg2.extras

from longtask import taskrecord

# Plain tokens the clients send; the server is configured with their SHA-256 only.
TOKENS: dict[str, dict[str, Any]] = {
    "viewer": {"subject": "viewer-vera", "role": "viewer", "organizations": ["acme"]},
    "operator": {"subject": "support-alice", "role": "operator", "organizations": ["acme"]},
    "other": {"subject": "support-bob", "role": "operator", "organizations": ["globex"]},
    "admin": {"subject": "admin-ada", "role": "admin", "organizations": ["*"]},
}
UPLOAD_LIMIT = 256 * 1024


def token_of(role: str) -> str:
    """The plain token of a test identity (a fixed, non-placeholder string)."""
    return f"test-token-{role}-5f0c2d"



def upload(client: httpx.Client, data: bytes, filename: str = "households.csv",
           **params: str) -> httpx.Response:
    """``POST /v1/files`` with ``data`` as the multipart ``file`` part."""
    return client.post("/v1/files", params=params,
                       files={"file": (filename, data, "text/csv")})


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem details body, after checking the status and media type."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:500]}")
    assert response.headers["content-type"].startswith("application/problem+json"), (
        response.headers["content-type"])
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


HOUSEHOLDS_CSV = (b"household_id,head_name,members,phone\n"
                  b"H-1,Awa Diop,4,+221339612727\n"
                  b"H-2,Moussa Fall,2,\n")


def baseline_request(file_id: str, **extra: Any) -> dict[str, Any]:
    """The body of a BaselineUpload create for acme's Households form."""
    return {"type": "BaselineUpload", "organization": "acme",
            "params": {"form": "Households", "fileId": file_id, "keyColumn": "household_id"},
            **extra}


def create_baseline(client: httpx.Client, **extra: Any) -> dict[str, Any]:
    """Upload the small households file and create a BaselineUpload of it; the task."""
    uploaded = upload(client, HOUSEHOLDS_CSV)
    assert uploaded.status_code == 201, uploaded.text
    response = client.post("/v1/tasks", json=baseline_request(uploaded.json()["id"], **extra))
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def record_run(db_url: str, task: dict[str, Any], outcome: str = "succeeded",
               done: int = 2) -> None:
    """Write the runner's record of ``task`` (a LongTask object) as the runner does, through
    :mod:`longtask.taskrecord`: register, take the lease, commit one last chunk that ends the
    run with ``outcome`` (``succeeded``, ``failed``) or, for ``running``, leaves it going."""
    record = taskrecord.TaskRecord.from_body(task)
    conn = psycopg2.connect(db_url)
    try:
        taskrecord.register(conn, record)
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            lease = taskrecord.acquire(cur, record.uid, "run", "test-runner")
            assert lease is not None, "the record gave no lease"
        with conn.cursor() as cur:
            lock = taskrecord.lock_for_chunk(cur, record.uid, "run")
            ended = outcome != "running"
            taskrecord.checkpoint(
                cur, record.uid, "run", epoch=lease["epoch"], cursor={"line": done + 1},
                done=done, row_errors=0, rate=None, eta=None, rows=done, chunk_errors=0,
                chunk_started_at=lock.started_at, finished=ended,
                end_status=outcome if ended else None,
                message="the runner stopped" if outcome == "failed" else None)
        conn.commit()
    finally:
        conn.close()


def hold_of(db_url: str, uid: str) -> str | None:
    """The ``hold`` column of a task's record (``None`` without a record)."""
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT hold FROM longtask.tasks WHERE uid = %s", (uid,))
            row = cur.fetchone()
    finally:
        conn.close()
    return row[0] if row else None
