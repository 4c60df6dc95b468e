"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from api_support import problem
from longtask.api.settings import ApiSettings

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


def test_healthz_answers_without_a_token(api_url: str) -> None:
    response = httpx.get(f"{api_url}/healthz", timeout=10)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_kubernetes_and_the_database_answer(api_url: str) -> None:
    response = httpx.get(f"{api_url}/readyz", timeout=10)

    assert response.status_code == 200, response.text
    assert response.json() == {"kubernetes": "ok", "database": "ok"}


def test_readyz_is_503_naming_the_database_when_it_cannot_be_reached(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    # A port on which nothing listens: the connection is refused at once.
    unreachable = api_settings.model_copy(
        update={"database_url": "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2"})
    url = serve(unreachable)

    body = problem(httpx.get(f"{url}/readyz", timeout=15), 503)

    assert body["checks"] == {"kubernetes": "ok", "database": "unavailable"}
    assert body["detail"] == "unreachable: database"
    assert "127.0.0.1" not in response_text(body) and "nobody" not in response_text(body), (
        "the probe is open to anyone: no host or user of the database in it")


def response_text(body: object) -> str:
    return json.dumps(body)


def test_metrics_count_requests_by_route_template(api_url: str, viewer: httpx.Client) -> None:
    viewer.get("/v1/tasks/no-such-task")

    text = httpx.get(f"{api_url}/metrics", timeout=10).text

    assert ('longtask_api_requests_total{method="GET",route="/v1/tasks/{name}",status="404"} 1.0'
            in text), text[:2000]


def test_openapi_documents_every_endpoint_and_the_bearer_scheme(api_url: str) -> None:
    doc = httpx.get(f"{api_url}/openapi.json", timeout=10).json()

    paths = set(doc["paths"])
    assert {"/v1/files", "/v1/files/{file_id}", "/v1/tasks", "/v1/tasks/validate",
            "/v1/tasks/{name}", "/v1/tasks/{name}/pause", "/v1/tasks/{name}/resume",
            "/v1/tasks/{name}/terminate", "/v1/tasks/{name}/errors",
            "/v1/tasks/{name}/output", "/v1/tasks/{name}/history", "/v1/tasks/{name}/watch",
            "/healthz", "/readyz", "/metrics"} <= paths
    assert any(s.get("scheme") == "bearer" for s in doc["components"]["securitySchemes"].values())
    assert httpx.get(f"{api_url}/docs", timeout=10).status_code == 200
