"""``GET /v1/tasks/{name}/watch``: the Kubernetes watch of one LongTask bridged to
Server-Sent Events, in worker threads, with a bounded number of streams."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from longtask.api.deps import (
    MetricsDep,
    SettingsDep,
    TasksDep,
    ViewerDep,
)
from longtask.api.kube import KubeUnavailable, ResourceExpired, Tasks
from longtask.api.problems import (
    ApiProblem,
)
from longtask.api.schemas import (
    TaskPublic,
)
from longtask.api.task_common import (
    ROUTER,
    visible,
)

log = logging.getLogger("longtask.api.tasks")
router = APIRouter(**ROUTER)


def _sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One Server-Sent Event (WHATWG HTML, "Server-sent events"): ``event``, ``id``, ``data``."""
    lines = [f"event: {event}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode()


@router.get(
    "/{name}/watch", response_class=StreamingResponse, summary="Server-Sent Events",
    responses={200: {"content": {"text/event-stream": {}}}},
)
def watch_task(
    name: str,
    request: Request,
    principal: ViewerDep,
    tasks: TasksDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    timeout: Annotated[float | None, Query(gt=0, description="Seconds before the stream ends")]
        = None,
) -> StreamingResponse:
    """A stream of the task as it changes, until it ends.

    Events: ``task`` (the task, at once and after each change of its spec or status),
    ``end`` (a final phase was reached), ``deleted``, ``timeout`` (the stream's bound,
    ``timeout`` or ``LONGTASK_API_WATCH_MAX_SECONDS``, was reached: reconnect), ``error``.
    A ``: keep-alive`` comment comes every ``LONGTASK_API_WATCH_HEARTBEAT_SECONDS``. 503
    when the API already serves ``LONGTASK_API_MAX_WATCHES`` streams.
    """
    body = visible(tasks, name, principal)
    slots: threading.BoundedSemaphore = request.app.state.watch_slots
    if not slots.acquire(blocking=False):
        raise ApiProblem(503, "too-many-watches", "Service Unavailable",
                         "too many open watch streams; retry later",
                         headers={"Retry-After": "5"})
    bound = min(timeout or settings.watch_max_seconds, settings.watch_max_seconds)
    metrics.watches.inc()
    slot = _Slot(slots, metrics)
    stream = _in_threads(_watch_stream(tasks, name, body, bound,
                                       settings.watch_heartbeat_seconds), slot)
    # A stream dropped before its first step never runs its finally: free the slot then too.
    weakref.finalize(stream, slot.release)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class _Slot:
    """One of the watch slots, released once whichever way the stream ends."""

    def __init__(self, slots: threading.BoundedSemaphore, metrics: Any) -> None:
        self._slots = slots
        self._metrics = metrics
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._slots.release()
        self._metrics.watches.dec()


async def _in_threads(stream: Iterator[bytes], slot: _Slot) -> AsyncIterator[bytes]:
    """Step the blocking ``stream`` in worker threads; free the slot however it ends.

    When the client goes away the server cancels this generator: the slot is freed at
    once, and the step under way ends by itself within one heartbeat (the watch's window),
    after which nothing steps the stream again and it is collected.
    """
    try:
        while (chunk := await anyio.to_thread.run_sync(next, stream, None,
                                                        abandon_on_cancel=True)) is not None:
            yield chunk
    finally:
        slot.release()


def _watch_stream(tasks: Tasks, name: str, body: dict[str, Any], bound: float,
                  heartbeat: float) -> Iterator[bytes]:
    deadline = time.monotonic() + bound
    public = TaskPublic.from_body(body)
    last = public.model_dump(mode="json", by_alias=True)
    version = body["metadata"]["resourceVersion"]
    yield _sse("task", last, version)
    if public.final:
        yield _sse("end", {"phase": public.phase})
        return
    while (left := deadline - time.monotonic()) > 0:
        window = max(1, math.ceil(min(heartbeat, left)))
        try:
            for kind, obj in tasks.watch(name, version, window):
                version = obj["metadata"].get("resourceVersion", version)
                if kind == "DELETED":
                    yield _sse("deleted", {"name": name}, version)
                    return
                public = TaskPublic.from_body(obj)
                now = public.model_dump(mode="json", by_alias=True)
                if now != last:
                    last = now
                    yield _sse("task", now, version)
                if public.final:
                    yield _sse("end", {"phase": public.phase})
                    return
        except ResourceExpired:
            fresh = tasks.get(name)
            if fresh is None:
                yield _sse("deleted", {"name": name})
                return
            version = fresh["metadata"]["resourceVersion"]
        except KubeUnavailable as exc:
            yield _sse("error", {"detail": str(exc)})
            return
        yield b": keep-alive\n\n"
    yield _sse("timeout", {"seconds": bound})
