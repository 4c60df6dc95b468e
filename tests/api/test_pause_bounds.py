"""Bounded and scheduled pauses through the API: ``resumeAt``, ``maxPauseSeconds`` and
``onMaxPause`` on a pause (or at creation, or in a PATCH), ``maxRunningSeconds`` at
creation or in a PATCH; the spec the API writes, what it refuses, and a resume that removes
a ``resumeAt`` left behind. No operator runs here: tests/operator_cluster/test_bounds.py
has the operator end the pauses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from api_support import HOUSEHOLDS_CSV, baseline_request, create_baseline, problem, upload

from longtask.constants import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


def stored(custom_objects: Any, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = custom_objects.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)
    return body


def ahead(seconds: int = 3600) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).replace(microsecond=0)


def test_a_pause_carries_its_bounds_into_the_spec(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)
    at = ahead()

    response = operator.post(f"/v1/tasks/{task['name']}/pause", json={
        "reason": "night", "resumeAt": at.isoformat(), "maxPauseSeconds": 7200,
        "onMaxPause": "Terminate"})

    assert response.status_code == 202, response.text
    assert response.json()["resumeAt"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = stored(custom_objects, api_namespace, task["name"])["spec"]
    assert (spec["state"], spec["resumeAt"], spec["maxPauseSeconds"], spec["onMaxPause"]) == (
        "Paused", at.strftime("%Y-%m-%dT%H:%M:%SZ"), 7200, "Terminate"), spec


def test_a_resume_removes_the_resume_at_of_the_pause_it_ends(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)
    operator.post(f"/v1/tasks/{task['name']}/pause", json={"resumeAt": ahead().isoformat()})

    response = operator.post(f"/v1/tasks/{task['name']}/resume")

    assert response.status_code == 202, response.text
    spec = stored(custom_objects, api_namespace, task["name"])["spec"]
    assert spec["state"] == "Running" and "resumeAt" not in spec, spec


@pytest.mark.parametrize(("value", "words"), [
    ("2020-01-01T00:00:00Z", "in the past"),
    ("2099-01-01T00:00:00", "time zone"),
    ("tomorrow", "datetime"),
])
def test_a_resume_at_in_the_past_or_without_a_zone_is_422(
        operator: httpx.Client, custom_objects: Any, api_namespace: str, value: str,
        words: str) -> None:
    task = create_baseline(operator)

    body = problem(operator.post(f"/v1/tasks/{task['name']}/pause",
                                 json={"resumeAt": value}), 422)

    assert body["errors"][0]["pointer"] == "#/resumeAt", body
    assert words in body["errors"][0]["detail"], body
    assert stored(custom_objects, api_namespace, task["name"])["spec"]["state"] == "Running"


def test_a_resume_at_on_a_task_asked_to_run_is_409(operator: httpx.Client) -> None:
    task = create_baseline(operator)

    body = problem(operator.patch(f"/v1/tasks/{task['name']}",
                                  json={"resumeAt": ahead().isoformat()}), 409)

    assert "resumeAt ends a pause" in body["detail"], body


def test_a_patch_may_pause_with_a_resume_at_and_set_the_bounds(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)

    response = operator.patch(f"/v1/tasks/{task['name']}", json={
        "state": "Paused", "resumeAt": ahead().isoformat(), "maxRunningSeconds": 600})

    assert response.status_code == 200, response.text
    spec = stored(custom_objects, api_namespace, task["name"])["spec"]
    assert (spec["state"], spec["maxRunningSeconds"]) == ("Paused", 600), spec
    removed = operator.patch(f"/v1/tasks/{task['name']}", json={"maxRunningSeconds": None})
    assert removed.status_code == 200 and removed.json()["maxRunningSeconds"] is None


def test_a_task_is_created_with_its_bounds(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator, state="Paused", resumeAt=ahead().isoformat(),
                           maxPauseSeconds=60, onMaxPause="Resume", maxRunningSeconds=3600)

    spec = stored(custom_objects, api_namespace, task["name"])["spec"]
    assert (spec["maxPauseSeconds"], spec["onMaxPause"], spec["maxRunningSeconds"]) == (
        60, "Resume", 3600), spec
    assert "resumeAt" in spec and task["maxRunningSeconds"] == 3600, task


def test_a_task_created_running_with_a_resume_at_is_422(operator: httpx.Client) -> None:
    file_id = upload(operator, HOUSEHOLDS_CSV).json()["id"]
    body = problem(operator.post("/v1/tasks", json=baseline_request(
        file_id, resumeAt=ahead().isoformat())), 422)

    assert "state Paused" in str(body), body


def test_the_bounds_of_an_ended_task_are_409(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)
    custom_objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, api_namespace, PLURAL, task["name"],
        {"status": {"phase": "Failed", "startedAt": "2026-01-01T00:00:00Z"}})

    body = problem(operator.patch(f"/v1/tasks/{task['name']}",
                                  json={"maxRunningSeconds": 60}), 409)

    assert "ended (Failed)" in body["detail"], body


def test_another_organization_cannot_bound_or_schedule_the_task(
        operator: httpx.Client, other: httpx.Client, custom_objects: Any,
        api_namespace: str) -> None:
    task = create_baseline(operator)

    problem(other.post(f"/v1/tasks/{task['name']}/pause",
                       json={"resumeAt": ahead().isoformat()}), 404)
    problem(other.patch(f"/v1/tasks/{task['name']}", json={"maxRunningSeconds": 1}), 404)

    spec = stored(custom_objects, api_namespace, task["name"])["spec"]
    assert spec["state"] == "Running" and "maxRunningSeconds" not in spec, spec
