"""``DELETE /v1/tasks/{name}`` and how a task being deleted reads, with the operator down.

No operator runs here. Why these tests write ``status`` and ``metadata.finalizers``: both
are the operator's writes (the status subresource, and the finalizer it puts on every task
it reconciles), made here the same way through the Kubernetes API server, so the API's
answers can be checked for each phase and for a task the finalizer keeps while no operator
runs. The runner's record is written as the runner writes it (``longtask.taskrecord``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import create_baseline, hold_of, problem, record_run

from devcluster import kube
from longtask.constants import (
    ANNOTATION_REASON,
    ANNOTATION_REQUESTED_BY,
    FINALIZER,
    GROUP,
    PLURAL,
    VERSION,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

KUBECTL = "/usr/bin/kubectl"


@pytest.fixture
def finalized(custom_objects: Any, api_namespace: str) -> Iterator[Any]:
    """``finalized(name)``: put the operator's finalizer on a task; every task's finalizer
    is stripped after the test, as an operator would release it, so the namespace can go."""
    def add(name: str) -> None:
        custom_objects.patch_namespaced_custom_object(
            GROUP, VERSION, api_namespace, PLURAL, name,
            {"metadata": {"finalizers": [FINALIZER]}})

    yield add
    listed = custom_objects.list_namespaced_custom_object(GROUP, VERSION, api_namespace, PLURAL)
    for item in listed.get("items") or []:
        custom_objects.patch_namespaced_custom_object(
            GROUP, VERSION, api_namespace, PLURAL, item["metadata"]["name"],
            {"metadata": {"finalizers": None}})


def stored(custom_objects: Any, namespace: str, name: str) -> dict[str, Any] | None:
    listed = custom_objects.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, field_selector=f"metadata.name={name}")
    items: list[dict[str, Any]] = listed.get("items") or []
    return items[0] if items else None


def set_phase(custom_objects: Any, namespace: str, name: str, phase: str,
              started: bool = True) -> None:
    status: dict[str, Any] = {"phase": phase}
    if started:
        status["startedAt"] = "2026-01-01T00:00:00Z"
    custom_objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status})


def events_of(core_v1: Any, namespace: str, uid: str) -> list[Any]:
    listed = core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}")
    return list(listed.items)


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "RolledBack", "Terminated"])
def test_an_ended_task_is_deleted_and_the_request_recorded(
        operator: httpx.Client, custom_objects: Any, core_v1: Any, api_namespace: str,
        phase: str) -> None:
    task = create_baseline(operator)
    set_phase(custom_objects, api_namespace, task["name"], phase)

    response = operator.delete(f"/v1/tasks/{task['name']}", params={"reason": "tidy up"})

    assert response.status_code == 204, response.text
    assert stored(custom_objects, api_namespace, task["name"]) is None
    problem(operator.get(f"/v1/tasks/{task['name']}"), 404)
    said = [e for e in events_of(core_v1, api_namespace, task["uid"])
            if e.reason == "DeleteRequested"]
    assert len(said) == 1 and "support-alice" in said[0].message
    assert "tidy up" in said[0].message, said[0].message


def test_a_task_that_ran_and_has_not_ended_is_not_deleted_without_keep_writes(
        operator: httpx.Client, custom_objects: Any, api_namespace: str, db_url: str,
        finalized: Any) -> None:
    task = create_baseline(operator)
    name = task["name"]
    finalized(name)
    set_phase(custom_objects, api_namespace, name, "Running")
    record_run(db_url, stored(custom_objects, api_namespace, name) or {}, "running", done=2)
    before = stored(custom_objects, api_namespace, name)

    refusal = problem(operator.delete(f"/v1/tasks/{name}"), 409)

    assert refusal["phase"] == "Running", refusal
    assert "keepWrites=true" in refusal["detail"] and "2 rows" in refusal["detail"], refusal
    after = stored(custom_objects, api_namespace, name)
    assert after is not None and before is not None
    assert "deletionTimestamp" not in after["metadata"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
        "a refused delete changed the task")
    assert hold_of(db_url, task["uid"]) is None, "a refused delete held the run"


def test_keep_writes_deletes_a_running_task_holds_its_run_and_shows_it_deleting(
        operator: httpx.Client, custom_objects: Any, api_namespace: str, db_url: str,
        finalized: Any) -> None:
    task = create_baseline(operator)
    name = task["name"]
    finalized(name)
    set_phase(custom_objects, api_namespace, name, "Running")
    record_run(db_url, stored(custom_objects, api_namespace, name) or {}, "running")

    response = operator.delete(f"/v1/tasks/{name}",
                               params={"keepWrites": "true", "reason": "wrong org"})

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["deleting"] is True and body["deletionRequestedAt"], body
    assert body["requestedBy"] == "support-alice" and body["reason"] == "wrong org", body
    assert hold_of(db_url, task["uid"]) == "Terminated", "no chunk may commit after a delete"
    after = stored(custom_objects, api_namespace, name)
    assert after is not None and after["metadata"]["deletionTimestamp"]
    annotations = after["metadata"]["annotations"]
    assert annotations[ANNOTATION_REQUESTED_BY] == "support-alice"
    assert annotations[ANNOTATION_REASON] == "wrong org"
    again = operator.delete(f"/v1/tasks/{name}")
    assert again.status_code == 202 and again.json()["deleting"] is True, again.text


def test_a_task_that_never_ran_is_deleted_without_keep_writes(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    queued = create_baseline(operator, name="queued-one")
    paused = create_baseline(operator, name="paused-one", state="Paused")
    set_phase(custom_objects, api_namespace, queued["name"], "Queued", started=False)

    for task in (queued, paused):
        response = operator.delete(f"/v1/tasks/{task['name']}")
        assert response.status_code == 204, response.text
        assert stored(custom_objects, api_namespace, task["name"]) is None


def test_the_runners_recorded_success_lets_a_delete_through_without_keep_writes(
        operator: httpx.Client, custom_objects: Any, api_namespace: str,
        db_url: str) -> None:
    """Status still Running, the record says succeeded: the task has ended (nothing left
    for a rollback: a completed task is not rolled back)."""
    task = create_baseline(operator)
    set_phase(custom_objects, api_namespace, task["name"], "Running")
    record_run(db_url, stored(custom_objects, api_namespace, task["name"]) or {}, "succeeded")

    response = operator.delete(f"/v1/tasks/{task['name']}")

    assert response.status_code == 204, response.text


def test_only_an_operator_of_the_tasks_organization_may_delete(
        operator: httpx.Client, viewer: httpx.Client, other: httpx.Client,
        custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)
    set_phase(custom_objects, api_namespace, task["name"], "Succeeded")

    problem(viewer.delete(f"/v1/tasks/{task['name']}"), 403)
    problem(other.delete(f"/v1/tasks/{task['name']}"), 404)
    problem(other.delete(f"/v1/tasks/{task['name']}", params={"keepWrites": "true"}), 404)
    problem(operator.delete("/v1/tasks/no-such-task"), 404)
    assert stored(custom_objects, api_namespace, task["name"]) is not None


def test_with_the_operator_down_a_deleted_task_reads_as_deleting_in_the_api_and_kubectl(
        operator: httpx.Client, custom_objects: Any, api_namespace: str,
        kube_cluster: kube.KubeCluster, finalized: Any) -> None:
    """Deleted with kubectl while the finalizer keeps it and no operator acts: the phase is
    still the last one the operator wrote, and both the API and ``kubectl get`` say the
    task is being deleted."""
    task = create_baseline(operator)
    name = task["name"]
    finalized(name)
    set_phase(custom_objects, api_namespace, name, "Running")
    env = {**os.environ, **kube_cluster.env()}

    def kubectl(*args: str) -> str:
        done = subprocess.run([KUBECTL, "-n", api_namespace, *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    kubectl("delete", "lt", name, "--wait=false")

    read = operator.get(f"/v1/tasks/{name}").json()
    listed = operator.get("/v1/tasks", params={"limit": 50}).json()["items"]
    table = kubectl("get", "lt", name).splitlines()
    assert read["deleting"] is True and read["deletionRequestedAt"], read
    assert read["phase"] == "Running", read
    assert [t["deleting"] for t in listed if t["name"] == name] == [True], listed
    assert table[0].split()[-1] == "DELETING", table
    deleting = table[1][table[0].index("DELETING"):].strip()
    assert deleting and deleting not in ("<none>", "<unknown>"), table
    assert deleting[-1] in "smhd", f"the time since the delete, as for Age: {table}"
    alive = create_baseline(operator, name="not-deleted")
    other = kubectl("get", "lt", alive["name"]).splitlines()
    assert other[1][other[0].index("DELETING"):].strip() in ("", "<none>"), other
