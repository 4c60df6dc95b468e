"""The app factory: ``create_app(settings) -> FastAPI``, every dependency built once here."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from longtask.api import files, health, problems, storage, tasks
from longtask.api.auth import TokenStore
from longtask.api.bodytimeout import BodyTimeoutMiddleware
from longtask.api.console import router as console
from longtask.api.console.session import SessionKeys
from longtask.api.db import Database, DatabaseUnavailable
from longtask.api.kube import KubeError, KubeUnavailable, Tasks, load_api_client
from longtask.api.metrics import Metrics, MetricsMiddleware
from longtask.api.problems import BodyLimitMiddleware
from longtask.api.settings import PLACEHOLDER_HASHES, ApiSettings
from longtask.api.task_watch import WatchSlots
from longtask.api.validation_pool import ValidationPool

log = logging.getLogger("longtask.api")

MAX_JSON_BODY = 1 << 20  # bytes: a task request is a few hundred; uploads have their own limit

DESCRIPTION = """\
Start, watch, pause, resume and terminate long-running data tasks (baseline uploads,
exports, bulk team creation). Each task is a `LongTask` resource; this API edits its spec
and reads its status. Authenticate with `Authorization: Bearer <token>`. Errors are
RFC 9457 problem details.
"""


def create_app(settings: ApiSettings) -> FastAPI:
    """The API for ``settings``: tokens are read now (a bad token file fails here);
    Kubernetes and the database are reached on first use."""
    refuse = PLACEHOLDER_HASHES if settings.refuses_placeholders else frozenset()
    token_store = TokenStore(file=settings.tokens_file, text=settings.tokens, refuse=refuse,
                             require_tokens=settings.refuses_placeholders)
    kube_client = load_api_client(settings.kubeconfig, pool_size=max(32, settings.max_watches * 2))
    task_client = Tasks(kube_client, settings.namespace, settings.kube_timeout_seconds)
    database = Database(settings.database_url, settings.db_pool_size)
    metrics = Metrics()
    metrics.watch_tokens(token_store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("api_started", extra={"namespace": settings.namespace,
                                       "tokens": len(token_store)})
        yield
        database.close()
        task_client.close()

    app = FastAPI(title="LongTask API", version="v1", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.tokens = token_store
    app.state.tasks = task_client
    app.state.database = database
    app.state.metrics = metrics
    app.state.digests = tasks.DigestCache()
    # Development without a secret: one made now, so sessions end with the process.
    app.state.sessions = SessionKeys(settings.session_secret or secrets.token_urlsafe(32),
                                     settings.session_max_age_seconds)
    app.state.watch_slots = WatchSlots(settings.max_watches)
    app.state.validations = ValidationPool(settings.max_validations,
                                           settings.max_validations_per_subject)
    metrics.watch_validations(app.state.validations)

    problems.install(app)
    _dependency_errors(app)
    app.include_router(health.router)
    app.include_router(files.router)
    app.include_router(storage.router)
    app.include_router(tasks.router)
    app.include_router(console.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_JSON_BODY, exempt=("/v1/files",))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Outermost: a trickling body is cut off before any handler waits on it.
    app.add_middleware(BodyTimeoutMiddleware, idle_seconds=settings.body_idle_timeout_seconds,
                       total_seconds=settings.body_timeout_seconds,
                       min_rate=settings.body_min_bytes_per_second,
                       on_timeout=metrics.body_timeouts.inc)

    return app


def _dependency_errors(app: FastAPI) -> None:
    """An unreachable dependency is 503 (retry later); a refused call is 502."""
    async def unavailable(request: Request, exc: Exception) -> Response:
        log.warning("dependency_unavailable", extra={"error": str(exc),
                                                     "path": request.url.path})
        return problems.problem_response(
            request, 503, "dependency-unavailable", "Service Unavailable", str(exc),
            headers={"Retry-After": "5"})

    async def refused(request: Request, exc: Exception) -> Response:
        log.error("kubernetes_refused", extra={"error": str(exc), "path": request.url.path})
        return problems.problem_response(request, 502, "kubernetes-refused", "Bad Gateway",
                                         str(exc))

    app.add_exception_handler(KubeUnavailable, unavailable)
    app.add_exception_handler(DatabaseUnavailable, unavailable)
    app.add_exception_handler(KubeError, refused)
