"""pause, resume, terminate and PATCH: spec edits with who and why, in one merge patch.

No operator runs here: these tests check what the API itself guarantees (the spec it
writes, the annotations beside it, the transitions it refuses). The lifecycle that follows
is the operator's, tested end to end elsewhere.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import threading
from typing import Any

import httpx
import pytest
from api_support import create_baseline, problem

from devcluster import kube
from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY, GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

KUBECTL = "/usr/bin/kubectl"


def stored(custom_objects: Any, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = custom_objects.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)
    return body


def test_pause_sets_the_state_and_who_asked_in_one_change(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)
    before = stored(custom_objects, api_namespace, task["name"])

    response = operator.post(f"/v1/tasks/{task['name']}/pause",
                             json={"reason": "columns look swapped"})

    assert response.status_code == 202, response.text
    assert response.json()["state"] == "Paused"
    after = stored(custom_objects, api_namespace, task["name"])
    assert after["spec"]["state"] == "Paused"
    assert after["metadata"]["annotations"][ANNOTATION_REQUESTED_BY] == "support-alice"
    assert after["metadata"]["annotations"][ANNOTATION_REASON] == "columns look swapped"
    # One merge patch: spec and annotations moved together, in one generation step.
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])


def test_a_request_already_in_effect_is_202_and_changes_nothing(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator, state="Paused")
    before = stored(custom_objects, api_namespace, task["name"])

    response = operator.post(f"/v1/tasks/{task['name']}/pause")

    assert response.status_code == 202, response.text
    after = stored(custom_objects, api_namespace, task["name"])
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_resume_after_pause_asks_for_running_and_clears_the_old_reason(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)
    operator.post(f"/v1/tasks/{task['name']}/pause", json={"reason": "lunch"})

    response = operator.post(f"/v1/tasks/{task['name']}/resume")

    assert response.status_code == 202, response.text
    after = stored(custom_objects, api_namespace, task["name"])
    assert after["spec"]["state"] == "Running"
    assert ANNOTATION_REASON not in after["metadata"]["annotations"], (
        "a request without a reason must not inherit the previous one")


def test_terminate_with_rollback_false_keeps_the_writes(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)

    response = operator.post(f"/v1/tasks/{task['name']}/terminate",
                             json={"rollback": False, "reason": "partial load is fine"})

    assert response.status_code == 202, response.text
    spec = stored(custom_objects, api_namespace, task["name"])["spec"]
    assert (spec["state"], spec["onTerminate"]) == ("Terminated", "Keep")


def test_resume_after_terminate_is_409_with_the_reason(operator: httpx.Client) -> None:
    task = create_baseline(operator)
    operator.post(f"/v1/tasks/{task['name']}/terminate")

    body = problem(operator.post(f"/v1/tasks/{task['name']}/resume"), 409)

    assert "terminated" in body["detail"] and "new task" in body["detail"]
    assert body["state"] == "Terminated"


def test_terminate_again_is_202_but_another_rollback_choice_is_409(
        operator: httpx.Client) -> None:
    task = create_baseline(operator)
    operator.post(f"/v1/tasks/{task['name']}/terminate")

    assert operator.post(f"/v1/tasks/{task['name']}/terminate").status_code == 202
    body = problem(operator.post(f"/v1/tasks/{task['name']}/terminate",
                                 json={"rollback": False}), 409)
    assert "Rollback" in body["detail"]


def test_concurrent_double_terminate_makes_one_change_and_both_succeed(
        operator: httpx.Client, admin: httpx.Client, custom_objects: Any,
        api_namespace: str) -> None:
    task = create_baseline(operator)
    before = stored(custom_objects, api_namespace, task["name"])
    callers = [(operator, "wrong file"), (admin, "wrong file, again")] * 3

    def terminate(caller: tuple[httpx.Client, str]) -> httpx.Response:
        client, reason = caller
        return client.post(f"/v1/tasks/{task['name']}/terminate", json={"reason": reason})

    with concurrent.futures.ThreadPoolExecutor(len(callers)) as pool:
        responses = list(pool.map(terminate, callers))

    assert [r.status_code for r in responses] == [202] * len(callers), [r.text for r in responses]
    after = stored(custom_objects, api_namespace, task["name"])
    assert after["spec"]["state"] == "Terminated"
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1, (
        "only one of the racing requests may change the task")


def test_terminating_a_completed_task_is_409(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)
    # Why this test writes status: the 409 is computed by the API from status.phase, which
    # only the operator writes. It is set here through the status subresource, as the
    # operator does, because reaching Succeeded for real needs the whole lifecycle (the
    # end-to-end tests).
    custom_objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, api_namespace, PLURAL, task["name"], {"status": {"phase": "Succeeded"}})

    body = problem(operator.post(f"/v1/tasks/{task['name']}/terminate"), 409)

    assert "completed" in body["detail"]
    assert body["phase"] == "Succeeded"
    assert stored(custom_objects, api_namespace, task["name"])["spec"]["state"] == "Running"


def test_a_viewer_may_not_pause(operator: httpx.Client, viewer: httpx.Client) -> None:
    task = create_baseline(operator)

    problem(viewer.post(f"/v1/tasks/{task['name']}/pause"), 403)


def test_another_organization_cannot_touch_the_task(operator: httpx.Client,
                                                    other: httpx.Client) -> None:
    task = create_baseline(operator)

    for action in ("pause", "resume", "terminate"):
        problem(other.post(f"/v1/tasks/{task['name']}/{action}"), 404)
    problem(other.patch(f"/v1/tasks/{task['name']}", json={"state": "Paused"}), 404)
    problem(operator.post("/v1/tasks/no-such-task/pause"), 404)


def test_patch_is_a_merge_patch_of_the_state(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)

    response = operator.patch(
        f"/v1/tasks/{task['name']}", params={"reason": "night window"},
        content=b'{"state": "Paused"}', headers={"Content-Type": "application/merge-patch+json"})

    assert response.status_code == 200, response.text
    after = stored(custom_objects, api_namespace, task["name"])
    assert after["spec"]["state"] == "Paused"
    assert after["metadata"]["annotations"][ANNOTATION_REASON] == "night window"


def test_patching_a_field_fixed_at_creation_is_422_with_the_servers_reason(
        operator: httpx.Client) -> None:
    task = create_baseline(operator, parallelism=1)

    body = problem(operator.patch(f"/v1/tasks/{task['name']}", json={"parallelism": 2}), 422)

    assert body["errors"][0]["field"] == "parallelism", body
    assert "after creation" in body["errors"][0]["detail"]


def test_patch_refuses_unknown_fields_and_null_state(operator: httpx.Client) -> None:
    task = create_baseline(operator)

    unknown = problem(operator.patch(f"/v1/tasks/{task['name']}", json={"colour": "red"}), 422)
    null = problem(operator.patch(f"/v1/tasks/{task['name']}", json={"state": None}), 422)

    assert unknown["errors"][0]["pointer"] == "#/colour"
    assert null["errors"][0]["pointer"] == "#/state"


def test_kubectl_and_the_api_see_each_others_changes(
        operator: httpx.Client, kube_cluster: kube.KubeCluster, api_namespace: str) -> None:
    task = create_baseline(operator)
    env = {**os.environ, **kube_cluster.env()}

    def kubectl(*args: str) -> str:
        done = subprocess.run([KUBECTL, "-n", api_namespace, *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    kubectl("patch", "lt", task["name"], "--type=merge", "-p", '{"spec":{"state":"Paused"}}')
    seen_by_api = operator.get(f"/v1/tasks/{task['name']}").json()["state"]
    operator.post(f"/v1/tasks/{task['name']}/resume", json={"reason": "back on"})
    seen_by_kubectl = kubectl("get", "lt", task["name"], "-o",
                              "jsonpath={.spec.state} {.metadata.annotations}")

    assert seen_by_api == "Paused"
    assert seen_by_kubectl.startswith("Running ")
    assert "back on" in seen_by_kubectl and "support-alice" in seen_by_kubectl


def test_terminate_racing_completion_is_either_applied_before_it_or_refused(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    # Why this test writes status: completion is the operator writing status.phase
    # Succeeded through the status subresource; it is done here the same way, at the same
    # moment as the terminate, to check the API never accepts a terminate it read after
    # completion (its patch is conditional on the resourceVersion it read).
    outcomes = []
    for round_ in range(4):
        task = create_baseline(operator, name=f"race-{round_}")
        barrier = threading.Barrier(2)

        def complete(name: str = task["name"], barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            custom_objects.patch_namespaced_custom_object_status(
                GROUP, VERSION, api_namespace, PLURAL, name, {"status": {"phase": "Succeeded"}})

        completer = threading.Thread(target=complete)
        completer.start()
        barrier.wait()
        response = operator.post(f"/v1/tasks/{task['name']}/terminate")
        completer.join(timeout=30)
        spec = stored(custom_objects, api_namespace, task["name"])["spec"]
        outcomes.append(response.status_code)
        if response.status_code == 202:
            assert spec["state"] == "Terminated"
            assert response.json()["phase"] != "Succeeded", "accepted after completion"
        else:
            assert response.status_code == 409, response.text
            assert spec["state"] == "Running", "a refused terminate changed the spec"
    assert set(outcomes) <= {202, 409}
