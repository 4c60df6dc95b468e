"""GET /v1/tasks/{name}/watch: Server-Sent Events of the task as it changes, bounded."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from api_support import create_baseline, problem, token_of
from longtask.api.settings import ApiSettings

from longtask.constants import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


def events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """``(event, data)`` of each Server-Sent Event; comments (keep-alives) as ``(":", text)``."""
    kind, data = "message", ""
    for line in response.iter_lines():
        if line.startswith(":"):
            yield ":", line[1:].strip()
        elif line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            data = line[len("data: "):]
        elif line == "":
            if data:
                yield kind, json.loads(data)
            kind, data = "message", ""


def test_watch_sends_the_task_then_each_change_then_ends_at_its_bound(
        operator: httpx.Client) -> None:
    task = create_baseline(operator)
    seen: list[tuple[str, Any]] = []
    started = time.monotonic()

    with operator.stream("GET", f"/v1/tasks/{task['name']}/watch",
                         params={"timeout": 4}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for kind, data in events(response):
            seen.append((kind, data))
            if len(seen) == 1:
                threading.Thread(target=operator.post, daemon=True, args=(
                    f"/v1/tasks/{task['name']}/pause",), kwargs={"json": {"reason": "x"}}).start()

    kinds = [k for k, _ in seen if k != ":"]
    assert kinds == ["task", "task", "timeout"], seen
    assert seen[0][1]["state"] == "Running"
    changed = [d for k, d in seen if k == "task"][1]
    assert (changed["state"], changed["reason"]) == ("Paused", "x")
    assert ":" in [k for k, _ in seen], "keep-alive comments between changes"
    assert time.monotonic() - started < 4 + 5, "the stream ends at its bound"


def test_watch_ends_with_deleted_when_the_task_is_deleted(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    task = create_baseline(operator)
    kinds: list[str] = []

    with operator.stream("GET", f"/v1/tasks/{task['name']}/watch",
                         params={"timeout": 20}) as response:
        for kind, _ in events(response):
            kinds.append(kind)
            if kind == "task":
                custom_objects.delete_namespaced_custom_object(
                    GROUP, VERSION, api_namespace, PLURAL, task["name"])

    assert [k for k in kinds if k != ":"] == ["task", "deleted"]


def test_watch_of_another_organizations_task_is_404(operator: httpx.Client,
                                                    other: httpx.Client) -> None:
    task = create_baseline(operator)

    problem(other.get(f"/v1/tasks/{task['name']}/watch", params={"timeout": 1}), 404)


def test_watches_beyond_the_limit_are_503_with_retry_after(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings,
        operator: httpx.Client) -> None:
    task = create_baseline(operator)
    url = serve(api_settings.model_copy(update={"max_watches": 1}))
    client = httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {token_of('viewer')}"})
    path = f"/v1/tasks/{task['name']}/watch"

    with client.stream("GET", path, params={"timeout": 30}) as first:
        lines = first.iter_lines()  # kept: dropping it would close the stream
        next(lines)
        refused = client.get(path, params={"timeout": 1})
        lines.close()
    # The client left: the server frees the slot when it sees the disconnect.
    deadline = time.monotonic() + 5
    while (after := client.get(path, params={"timeout": 1})).status_code == 503:
        assert time.monotonic() < deadline, "the slot was not freed after the client left"
        time.sleep(0.2)
    client.close()

    problem(refused, 503)
    assert refused.headers["retry-after"] == "5"
    assert after.status_code == 200, after.text


def threads_in(function: str) -> int:
    """How many threads of this process (the API server's included) are inside
    ``function`` now."""
    count = 0
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code.co_name == function:
                count += 1
                break
            frame = frame.f_back  # type: ignore[assignment]
    return count


def open_and_leave(client: httpx.Client, path: str) -> int:
    """Open a watch, read its first event, and go away; the status it was answered with."""
    with client.stream("GET", path, params={"timeout": 30}) as response:
        if response.status_code == 200:
            next(response.iter_lines())
        return response.status_code


def test_a_client_that_leaves_frees_its_slot_only_when_its_watch_ends(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings,
        operator: httpx.Client) -> None:
    task = create_baseline(operator)
    url = serve(api_settings.model_copy(update={"max_watches": 4, "watch_heartbeat_seconds": 3,
                                               "max_watches_per_subject": 10}))
    client = httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {token_of('viewer')}"})
    path = f"/v1/tasks/{task['name']}/watch"
    try:
        # Streams opened and left at once: the watches of those that reached one still wait
        # on Kubernetes, each in a worker thread, and hold their slot until they return.
        cycles = [open_and_leave(client, path) for _ in range(24)]
        assert 503 in cycles, cycles
        assert threads_in("_watch_stream") <= 4, "more watches waiting than slots"
        # Each watch ends within its window (3 s): the slots come back.
        deadline = time.monotonic() + 15
        while open_and_leave(client, path) != 200:
            assert time.monotonic() < deadline, "the slots never came back"
            time.sleep(0.3)
    finally:
        client.close()


def test_one_subject_may_hold_only_its_share_of_the_streams(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings,
        operator: httpx.Client) -> None:
    task = create_baseline(operator)
    url = serve(api_settings.model_copy(update={"max_watches_per_subject": 1}))
    clients = {role: httpx.Client(base_url=url, timeout=30,
                                  headers={"Authorization": f"Bearer {token_of(role)}"})
               for role in ("viewer", "operator")}
    path = f"/v1/tasks/{task['name']}/watch"
    try:
        with clients["viewer"].stream("GET", path, params={"timeout": 30}) as first:
            lines = first.iter_lines()
            next(lines)
            second = clients["viewer"].get(path, params={"timeout": 1})
            other = clients["operator"].get(path, params={"timeout": 1})
            lines.close()
    finally:
        for client in clients.values():
            client.close()

    body = problem(second, 503)
    assert body["detail"].startswith("viewer-vera already has 1 open watch streams"), body
    assert other.status_code == 200, other.text
