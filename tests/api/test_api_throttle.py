"""The live throttle through the API: ``PATCH /v1/tasks/{name}`` sets, changes or removes
``rateLimit`` while the task runs, refuses it once the task has ended (the ended-task rule
of api/control.py) and answers another organization as if the task were missing.

No operator runs here (the runner's part and the operator's are tested in
tests/runner/test_live_rate_limit.py and tests/operator_cluster/test_throttle.py). A running
task is the operator writing ``status.phase`` through the status subresource; it is written
here the same way.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_support import create_baseline, problem, record_run

from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY, GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


def stored(custom_objects: Any, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = custom_objects.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)
    return body


def set_phase(custom_objects: Any, namespace: str, name: str, phase: str) -> None:
    custom_objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name,
        {"status": {"phase": phase, "startedAt": "2026-01-01T00:00:00Z"}})


def test_patch_changes_the_rate_limit_of_a_running_task_with_who_and_why(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator, rateLimit=100)
    set_phase(custom_objects, api_namespace, task["name"], "Running")

    response = operator.patch(f"/v1/tasks/{task['name']}", params={"reason": "peak hours"},
                              json={"rateLimit": 20})

    assert response.status_code == 200, response.text
    assert response.json()["rateLimit"] == 20
    after = stored(custom_objects, api_namespace, task["name"])
    assert after["spec"]["rateLimit"] == 20 and after["spec"]["state"] == "Running"
    annotations = after["metadata"]["annotations"]
    assert (annotations[ANNOTATION_REQUESTED_BY], annotations[ANNOTATION_REASON]) == (
        "support-alice", "peak hours")


def test_patch_sets_and_removes_the_rate_limit(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)
    set_phase(custom_objects, api_namespace, task["name"], "Running")

    set_ = operator.patch(f"/v1/tasks/{task['name']}", json={"rateLimit": 500})
    removed = operator.patch(f"/v1/tasks/{task['name']}", json={"rateLimit": None})

    assert set_.status_code == 200 and set_.json()["rateLimit"] == 500, set_.text
    assert removed.status_code == 200 and removed.json()["rateLimit"] is None, removed.text
    assert "rateLimit" not in stored(custom_objects, api_namespace, task["name"])["spec"]


def test_patch_of_the_same_rate_limit_changes_nothing(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator, rateLimit=100)
    before = stored(custom_objects, api_namespace, task["name"])

    response = operator.patch(f"/v1/tasks/{task['name']}", json={"rateLimit": 100})

    assert response.status_code == 200, response.text
    after = stored(custom_objects, api_namespace, task["name"])
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_rate_limit_out_of_bounds_is_422_naming_the_field(operator: httpx.Client) -> None:
    task = create_baseline(operator)

    body = problem(operator.patch(f"/v1/tasks/{task['name']}", json={"rateLimit": 0}), 422)

    assert body["errors"][0]["pointer"] == "#/rateLimit", body


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "RolledBack", "Terminated"])
def test_the_rate_limit_of_an_ended_task_is_409_naming_the_phase(
        operator: httpx.Client, custom_objects: Any, api_namespace: str, phase: str) -> None:
    task = create_baseline(operator, rateLimit=100)
    set_phase(custom_objects, api_namespace, task["name"], phase)
    before = stored(custom_objects, api_namespace, task["name"])

    refusal = problem(operator.patch(f"/v1/tasks/{task['name']}", json={"rateLimit": 20}), 409)

    assert f"ended ({phase})" in refusal["detail"] and refusal["phase"] == phase, refusal
    after = stored(custom_objects, api_namespace, task["name"])
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_throttle_after_the_runner_recorded_success_is_refused_before_the_status_says_so(
        operator: httpx.Client, custom_objects: Any, api_namespace: str, db_url: str) -> None:
    task = create_baseline(operator, rateLimit=100)
    set_phase(custom_objects, api_namespace, task["name"], "Running")
    record_run(db_url, stored(custom_objects, api_namespace, task["name"]), "succeeded")

    refusal = problem(operator.patch(f"/v1/tasks/{task['name']}", json={"rateLimit": 20}), 409)

    assert "ended (Succeeded)" in refusal["detail"], refusal


def test_another_organization_cannot_throttle_the_task(
        operator: httpx.Client, other: httpx.Client, custom_objects: Any,
        api_namespace: str) -> None:
    task = create_baseline(operator, rateLimit=100)
    set_phase(custom_objects, api_namespace, task["name"], "Running")

    problem(other.patch(f"/v1/tasks/{task['name']}", json={"rateLimit": 1}), 404)

    assert stored(custom_objects, api_namespace, task["name"])["spec"]["rateLimit"] == 100


def test_a_viewer_cannot_throttle_the_task(operator: httpx.Client, viewer: httpx.Client) -> None:
    task = create_baseline(operator, rateLimit=100)

    problem(viewer.patch(f"/v1/tasks/{task['name']}", json={"rateLimit": 1}), 403)
