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
    slot = _Slot.take(request.app.state.watch_slots, principal.subject,
                      settings.max_watches_per_subject, metrics)
    bound = min(timeout or settings.watch_max_seconds, settings.watch_max_seconds)
    stepper = _Stepper(_watch_stream(tasks, name, body, bound,
                                     settings.watch_heartbeat_seconds), slot)
    stream = _in_threads(stepper)
    # A stream dropped before its first step never runs its finally: let go of it then too.
    weakref.finalize(stream, stepper.abandon)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class WatchSlots:
    """The API's watch streams: at most ``total`` at once, and ``per_subject`` of one
    token's subject (one client cannot take every stream from the others)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._lock = threading.Lock()
        self._open = 0
        self._by_subject: dict[str, int] = {}

    def acquire(self, subject: str, per_subject: int) -> str | None:
        """Take a slot for ``subject``; None when taken, else why not."""
        with self._lock:
            if self._open >= self.total:
                return "too many open watch streams; retry later"
            if self._by_subject.get(subject, 0) >= per_subject:
                return (f"{subject} already has {per_subject} open watch streams, the most "
                        "one token may hold; close one, or retry later")
            self._open += 1
            self._by_subject[subject] = self._by_subject.get(subject, 0) + 1
            return None

    def release(self, subject: str) -> None:
        """Give back a slot of ``subject``."""
        with self._lock:
            self._open -= 1
            left = self._by_subject[subject] - 1
            if left:
                self._by_subject[subject] = left
            else:
                del self._by_subject[subject]


class _Slot:
    """One watch slot, released once: when its stream's worker has ended."""

    def __init__(self, slots: WatchSlots, subject: str, metrics: Any) -> None:
        self._slots, self._subject, self._metrics = slots, subject, metrics
        self._lock = threading.Lock()
        self._held = True

    @classmethod
    def take(cls, slots: WatchSlots, subject: str, per_subject: int, metrics: Any) -> _Slot:
        """A slot for ``subject``; :class:`ApiProblem` 503 with ``Retry-After`` if none."""
        refused = slots.acquire(subject, per_subject)
        if refused:
            raise ApiProblem(503, "too-many-watches", "Service Unavailable", refused,
                             headers={"Retry-After": "5"})
        metrics.watches.inc()
        return cls(slots, subject, metrics)

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._slots.release(self._subject)
        self._metrics.watches.dec()


class _Stepper:
    """Steps a blocking stream in worker threads and frees its slot only once no worker is
    inside it any more: a client that goes away while a step waits on the Kubernetes watch
    keeps the slot until that step returns (within one heartbeat), so the slots count the
    watches really open, not the clients still connected."""

    def __init__(self, stream: Iterator[bytes], slot: _Slot) -> None:
        self._stream, self._slot = stream, slot
        self._lock = threading.Lock()
        self._busy = self._abandoned = False

    def step(self) -> bytes | None:
        """The stream's next chunk, None at its end (run in a worker thread)."""
        with self._lock:
            self._busy = True
        chunk: bytes | None = None
        try:
            chunk = next(self._stream, None)
        finally:
            with self._lock:
                self._busy = False
                done = self._abandoned or chunk is None
            if done:
                self._stream.close()  # type: ignore[attr-defined]
                self._slot.release()
        return chunk

    def abandon(self) -> None:
        """Nobody reads on: free the slot now, or when the step under way returns."""
        with self._lock:
            self._abandoned = True
            busy = self._busy
        if not busy:
            self._slot.release()


async def _in_threads(stepper: _Stepper) -> AsyncIterator[bytes]:
    """Step the blocking stream in worker threads until it ends or the client goes away.

    When the client goes away the server cancels this generator; the step under way ends
    by itself within one heartbeat (the watch's window), and then gives the slot back.
    """
    try:
        while (chunk := await anyio.to_thread.run_sync(stepper.step,
                                                        abandon_on_cancel=True)) is not None:
            yield chunk
    finally:
        stepper.abandon()


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
            if fresh is None or fresh["metadata"]["uid"] != body["metadata"]["uid"]:
                # Gone, or deleted and made again under the same name: another task.
                yield _sse("deleted", {"name": name})
                return
            version = fresh["metadata"]["resourceVersion"]
        except KubeUnavailable as exc:
            yield _sse("error", {"detail": str(exc)})
            return
        yield b": keep-alive\n\n"
    yield _sse("timeout", {"seconds": bound})
