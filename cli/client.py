"""The REST API over HTTP (httpx): requests with the bearer token, problem details raised
as :class:`~longtask.cli.errors.ProblemAnswered`, and the watch stream's events."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from longtask.cli.errors import ProblemAnswered, Unreachable

TIMEOUT_SECONDS = 60.0
"""Connect, read and write timeout of a request; an upload's read waits for its answer."""


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event (WHATWG HTML, "Server-sent events"): its type and JSON data."""

    event: str
    data: Any


class Api:
    """A client of the API at ``url`` sending ``token``; use as a context manager."""

    def __init__(self, url: str, token: str, user_agent: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=TIMEOUT_SECONDS,
                                 headers={"Authorization": f"Bearer {token}",
                                          "User-Agent": user_agent})

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; the response when its status is below 400.

        Raises :class:`ProblemAnswered` with the API's problem details, or
        :class:`Unreachable` when no answer came.
        """
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"{method} {self.url}{path}: {exc or type(exc).__name__}"
                              ) from None
        if response.status_code >= 400:
            raise ProblemAnswered.from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, then the answer's JSON body."""
        return self.request(method, path, **kwargs).json()

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (body not read yet); errors as in :meth:`request`."""
        try:
            with self.http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ProblemAnswered.from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise Unreachable(f"{method} {self.url}{path}: {exc or type(exc).__name__}"
                              ) from None

    def watch(self, name: str, seconds: float | None) -> Iterator[Event]:
        """The task's watch stream (``GET /v1/tasks/{name}/watch``) as events, until the API
        ends it (``end``, ``deleted``, ``timeout``, ``error``). ``seconds`` bounds the
        stream (the API's ``?timeout=``); a stalled stream raises :class:`Unreachable`."""
        params = {"timeout": f"{seconds:.3f}"} if seconds is not None else {}
        # The API sends a keep-alive at least every LONGTASK_API_WATCH_HEARTBEAT_SECONDS
        # (15 by default): a read that waits far longer is a stalled stream.
        read = (seconds or 0) + 60 if seconds is not None else 120
        timeout = httpx.Timeout(TIMEOUT_SECONDS, read=min(read, 120))
        with self.stream("GET", f"/v1/tasks/{name}/watch", params=params,
                         timeout=timeout) as response:
            try:
                yield from parse_events(response.iter_lines())
            except httpx.TransportError as exc:
                raise Unreachable(f"the watch of {name} broke off: "
                                  f"{exc or type(exc).__name__}") from None


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events from the stream's lines: ``event:`` and ``data:`` fields up to a
    blank line make one event; comments (``:``) and ``id:`` are skipped."""
    kind, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield Event(kind, json.loads("\n".join(data)))
            kind, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)
    if data:
        yield Event(kind, json.loads("\n".join(data)))
