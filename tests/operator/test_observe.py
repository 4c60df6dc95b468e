"""Reading listed objects into observations: live pods, own Jobs, key queues."""

from __future__ import annotations

from typing import Any

from longtask.operator.decide import JobState
from longtask.operator.observe import concurrency_key, live_pods, own_job, queue_for

UID = "6f1c1d9e-7c1b-4c0e-9a53-2f0f3c3f7a11"
OTHER_UID = "0c2d4e6f-1111-4222-8333-944455566677"


def _owned(uid: str, name: str = "lt-t-run", **extra: Any) -> dict[str, Any]:
    ref = {
        "apiVersion": "collect.atlan.com/v1alpha1",
        "kind": "LongTask",
        "name": "t",
        "uid": uid,
        "controller": True,
    }
    return {"metadata": {"name": name, "ownerReferences": [ref], **extra}}


def _pod(phase: str, deleting: bool = False) -> dict[str, Any]:
    meta = {"deletionTimestamp": "2026-11-30T07:00:00Z"} if deleting else {}
    return {"metadata": meta, "status": {"phase": phase}}


def test_ended_pods_are_not_alive_and_deleting_ones_are() -> None:
    pods = [
        _pod("Running"),
        _pod("Pending"),
        _pod("Running", deleting=True),
        _pod("Succeeded"),
        _pod("Failed", deleting=True),
        {"metadata": {}},
    ]
    assert live_pods(pods) == 4, "Running, Pending, Running-being-deleted and no-status live"


def test_a_job_the_task_controls_is_its_own() -> None:
    assert own_job(_owned(UID), UID) == JobState(name="lt-t-run")


def test_a_leftover_job_of_a_deleted_namesake_is_not_the_tasks() -> None:
    assert own_job(_owned(OTHER_UID), UID) is None


def _task(
    name: str,
    minute: int,
    *,
    uid: str,
    key: str | None = None,
    status: dict[str, Any] | None = None,
    state: str = "Running",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "BaselineUpload",
        "organization": "acme",
        "params": {},
        "state": state,
    }
    if key:
        spec["concurrencyKey"] = key
    return {
        "metadata": {
            "name": name,
            "uid": uid,
            "creationTimestamp": f"2026-11-30T07:{minute:02d}:00Z",
        },
        "spec": spec,
        "status": status or {},
    }


def test_key_comes_from_status_then_from_spec() -> None:
    got = (
        concurrency_key(_task("a", 0, uid=UID, status={"concurrencyKey": "k1"})),
        concurrency_key(_task("b", 0, uid=UID)),
    )
    assert got == ("k1", "BaselineUpload/acme"), got


def test_queue_counts_a_task_with_a_run_job_as_holder_even_without_status() -> None:
    tasks = [_task("first", 0, uid=UID), _task("second", 1, uid=OTHER_UID)]
    queue = queue_for("BaselineUpload/acme", tasks, [_owned(UID)])
    got = ([h.name for h in queue.holders], queue.admitted)
    assert got == (["first"], ()), got


def test_queue_admits_the_oldest_of_its_own_key_only() -> None:
    tasks = [
        _task("other-key", 0, uid="a", key="exports/acme"),
        _task("second", 2, uid="b"),
        _task("first", 1, uid="c"),
    ]
    assert queue_for("BaselineUpload/acme", tasks, []).admitted == ("first",)
