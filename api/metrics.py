"""Prometheus metrics of one app (its own registry, so two apps in a process do not clash)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from longtask.api.auth import TokenStore
    from longtask.api.validation_pool import ValidationPool

log = logging.getLogger("longtask.api")


class Metrics:
    """The API's metrics; names follow the Prometheus conventions (``_total``, ``_seconds``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "longtask_api_requests_total", "HTTP requests answered, by route and status.",
            ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "longtask_api_request_duration_seconds",
            "Time to the response's start, by route (streams: headers only).",
            ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.upload_bytes = Counter(
            "longtask_api_upload_bytes_total", "File bytes stored by POST /v1/files.",
            registry=self.registry)
        self.control_actions = Counter(
            "longtask_api_control_actions_total",
            "Control requests by action and outcome (applied, in_effect, refused).",
            ["action", "outcome"], registry=self.registry)
        self.tasks_created = Counter(
            "longtask_api_tasks_created_total", "LongTasks created, by type (replays excluded).",
            ["type"], registry=self.registry)
        self.watches = Gauge(
            "longtask_api_watch_streams", "Server-Sent Event streams open now.",
            registry=self.registry)
        self.body_timeouts = Counter(
            "longtask_api_body_timeouts_total",
            "Requests cut off because their body came too slowly (408).",
            registry=self.registry)

    def watch_validations(self, pool: ValidationPool) -> None:
        """Export the dry runs in progress, read at each scrape."""
        running = Gauge("longtask_api_validations", "Dry runs in progress now.",
                        registry=self.registry)
        running.set_function(lambda: pool.running)

    def watch_tokens(self, store: TokenStore) -> None:
        """Export the token store's state, read at each scrape."""
        loaded = Gauge("longtask_api_tokens", "Tokens that authenticate now.",
                       registry=self.registry)
        loaded.set_function(lambda: len(store))
        failures = Gauge(
            "longtask_api_token_file_failures",
            "Times the token file could not be read or parsed, its tokens revoked.",
            registry=self.registry)
        failures.set_function(lambda: store.reload_failures)


class MetricsMiddleware:
    """Counts each HTTP request by its route template (``/v1/tasks/{name}``), not its path,
    and logs it (method, path, status, milliseconds, the caller's subject once known; never
    the Authorization header).

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` would run the app in a task
    of its own and cancel a streaming response (a watch) when another request came in.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
                self.metrics.latency.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(scope["method"], _route(scope),
                                         str(status["code"])).inc()
            log.info("request", extra={
                "method": scope["method"], "path": scope["path"], "status": status["code"],
                "ms": round((time.perf_counter() - start) * 1000, 1),
                "subject": (scope.get("state") or {}).get("subject"),
            })


def _route(scope: dict[str, Any] | Any) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
