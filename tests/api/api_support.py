"""Helpers for the API tests: identities, uploads, problem-details checks."""

from __future__ import annotations

from typing import Any

import httpx

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
