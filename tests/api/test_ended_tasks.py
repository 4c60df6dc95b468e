"""One rule for control requests on ended tasks, and the runner's success counted before
the operator writes it (api/README.md, "Control requests on ended tasks").

No operator runs here. Why these tests write ``status``: a final phase is the operator
writing ``status.phase`` through the status subresource; it is written here the same way.
The runner's success is written as the runner writes it, through ``longtask.taskrecord``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_support import create_baseline, problem, record_run

from longtask.constants import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


def stored(custom_objects: Any, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = custom_objects.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)
    return body


def set_phase(custom_objects: Any, namespace: str, name: str, phase: str) -> None:
    custom_objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name,
        {"status": {"phase": phase, "startedAt": "2026-01-01T00:00:00Z"}})


# (phase, spec.state that led there, request, body, expected status, words in the refusal)
TABLE = [
    ("Succeeded", None, "pause", None, 409, "ended (Succeeded)"),
    ("Succeeded", None, "resume", None, 409, "ended (Succeeded)"),
    ("Succeeded", None, "terminate", None, 409, "ended (Succeeded)"),
    ("Failed", None, "pause", None, 409, "ended (Failed)"),
    ("Failed", None, "resume", None, 409, "ended (Failed)"),
    ("Failed", None, "terminate", None, 409, "ended (Failed)"),
    ("RolledBack", "Terminated", "pause", None, 409, "ended (RolledBack)"),
    ("RolledBack", "Terminated", "resume", None, 409, "ended (RolledBack)"),
    ("RolledBack", "Terminated", "terminate", None, 202, None),
    ("RolledBack", "Terminated", "terminate", {"rollback": False}, 409, "ended (RolledBack)"),
    ("Terminated", "Terminated", "pause", None, 409, "ended (Terminated)"),
    ("Terminated", "Terminated", "resume", None, 409, "ended (Terminated)"),
    ("Terminated", "Terminated", "terminate", {"rollback": False}, 202, None),
    ("Terminated", "Terminated", "terminate", {"rollback": True}, 409, "ended (Terminated)"),
]


@pytest.mark.parametrize(("phase", "led_by", "verb", "body", "code", "words"), TABLE,
                         ids=[f"{t[0]}-{t[2]}-{t[3]}" for t in TABLE])
def test_a_final_phase_refuses_every_change_and_takes_a_repeated_terminate(
        operator: httpx.Client, custom_objects: Any, api_namespace: str, phase: str,
        led_by: str | None, verb: str, body: dict[str, Any] | None, code: int,
        words: str | None) -> None:
    task = create_baseline(operator)
    name = task["name"]
    if led_by == "Terminated":
        keep = phase == "Terminated"
        assert operator.post(f"/v1/tasks/{name}/terminate",
                             json={"rollback": not keep}).status_code == 202
    set_phase(custom_objects, api_namespace, name, phase)
    before = stored(custom_objects, api_namespace, name)

    response = operator.post(f"/v1/tasks/{name}/{verb}", json=body)

    after = stored(custom_objects, api_namespace, name)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
        "a request on an ended task changed it")
    if code == 202:
        assert response.status_code == 202, response.text
        assert response.json()["phase"] == phase
    else:
        refusal = problem(response, 409)
        assert words is not None and words in refusal["detail"], refusal["detail"]
        assert refusal["phase"] == phase, refusal


def test_a_patch_of_the_state_on_an_ended_task_is_409_like_the_actions(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)
    set_phase(custom_objects, api_namespace, task["name"], "Failed")

    refusal = problem(operator.patch(f"/v1/tasks/{task['name']}", json={"state": "Paused"}),
                      409)

    assert "ended (Failed)" in refusal["detail"], refusal


def test_a_terminate_after_the_runner_recorded_success_is_refused_before_the_status_says_so(
        operator: httpx.Client, custom_objects: Any, api_namespace: str, db_url: str) -> None:
    """The race: the record says succeeded, status.phase still Running (the operator has
    not reconciled yet). The API reads the record and answers as for Succeeded."""
    task = create_baseline(operator)
    name = task["name"]
    set_phase(custom_objects, api_namespace, name, "Running")
    record_run(db_url, stored(custom_objects, api_namespace, name), "succeeded")
    before = stored(custom_objects, api_namespace, name)

    terminate = problem(operator.post(f"/v1/tasks/{name}/terminate"), 409)
    pause = problem(operator.post(f"/v1/tasks/{name}/pause"), 409)

    assert terminate["phase"] == "Succeeded" and "not terminated" in terminate["detail"]
    assert pause["phase"] == "Succeeded", pause
    after = stored(custom_objects, api_namespace, name)
    assert after["spec"]["state"] == "Running", "a refused terminate changed the spec"
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_runner_still_running_does_not_make_a_terminate_late(
        operator: httpx.Client, custom_objects: Any, api_namespace: str, db_url: str) -> None:
    """The record consulted, a run not ended is no reason to refuse: 202, held."""
    task = create_baseline(operator)
    name = task["name"]
    set_phase(custom_objects, api_namespace, name, "Running")
    record_run(db_url, stored(custom_objects, api_namespace, name), "running")

    response = operator.post(f"/v1/tasks/{name}/terminate")

    assert response.status_code == 202, response.text
    assert stored(custom_objects, api_namespace, name)["spec"]["state"] == "Terminated"
