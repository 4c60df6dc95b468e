"""Request body deadlines at the ASGI level: a client that sends its body slowly is cut off.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) but not a request
whose body trickles in: one byte a second keeps a handler, its worker thread and whatever
it holds busy for as long as the client likes. :class:`BodyTimeoutMiddleware` wraps
``receive`` with two bounds:

- **idle**: the next chunk of the body must come within ``idle_seconds``;
- **total**: the whole body must have come ``total_seconds`` after the request started,
  unless it keeps arriving at ``min_rate`` bytes per second on average (a 1 GiB upload
  over a slow but honest link may take longer; a trickle may not).

When a bound is hit, the client gets ``408 Request Timeout`` (a problem, with ``Connection:
close``) if no response was started, and the application sees the client as gone
(``http.disconnect``), so it stops reading, rolls back and frees its slot. Whatever the
application sends afterwards is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from longtask.api.problems import problem_response
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("longtask.api")


class BodyTimeoutMiddleware:
    """408 for a request body that stalls (``idle_seconds``) or trickles (slower than
    ``min_rate`` bytes/s once ``total_seconds`` have passed); see the module docstring.
    ``on_timeout()`` is called for each body cut off (a metric)."""

    def __init__(self, app: ASGIApp, *, idle_seconds: float, total_seconds: float,
                 min_rate: int, on_timeout: Callable[[], object] | None = None) -> None:
        self.app = app
        self.on_timeout = on_timeout
        self.idle = idle_seconds
        self.total = total_seconds
        self.min_rate = min_rate

    def allowed(self, seen: int) -> float:
        """Seconds after the start by which a body of ``seen`` bytes so far is on time."""
        return max(self.total, seen / self.min_rate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        seen = 0
        body_done = False
        timed_out = False
        started = False

        async def timed_receive() -> Message:
            nonlocal seen, body_done, timed_out
            if timed_out:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()  # waits for the disconnect: not the body's time
            now = time.monotonic()
            wait = min(self.idle, start + self.allowed(seen) - now)
            try:
                if wait <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                timed_out = True
                await self._refuse(scope, send, started, seen, time.monotonic() - start)
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, timed_receive, guarded_send)

    async def _refuse(self, scope: Scope, send: Send, started: bool, seen: int,
                      elapsed: float) -> None:
        log.warning("request_body_timeout", extra={
            "path": scope.get("path"), "bytes": seen, "seconds": round(elapsed, 1)})
        if self.on_timeout is not None:
            self.on_timeout()
        if started:
            return
        detail = (f"the request body came too slowly: {seen} bytes in {elapsed:.0f} s; send "
                  f"each chunk within {self.idle:g} s and the body within {self.total:g} s, "
                  f"or at {self.min_rate} bytes/s or more")
        response = problem_response(Request(scope), 408, "request-timeout", "Request Timeout",
                                    detail, headers={"Connection": "close"})

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, nothing, send)
