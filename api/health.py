"""``/healthz`` (the process answers), ``/readyz`` (its dependencies do), ``/metrics``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from longtask.api.db import DatabaseUnavailable
from longtask.api.deps import DatabaseDep, MetricsDep, TasksDep
from longtask.api.kube import KubeError, KubeUnavailable
from longtask.api.problems import MEDIA_TYPE, TYPE_BASE
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("longtask.api.health")
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the Kubernetes API and the database answer",
            responses={503: {"content": {MEDIA_TYPE: {}}}})
def readyz(tasks: TasksDep, database: DatabaseDep) -> Any:
    """200 ``{"kubernetes": "ok", "database": "ok"}``; 503 problem naming what failed.

    Open to anyone (the kubelet probes it without a token), so a failure is named, never
    described: the error itself (host names, user names, server messages) goes to the log.
    """
    checks: dict[str, str] = {}
    errors: dict[str, str] = {}
    try:
        tasks.ping()
        checks["kubernetes"] = "ok"
    except (KubeUnavailable, KubeError) as exc:
        checks["kubernetes"], errors["kubernetes"] = "unavailable", str(exc)
    try:
        database.ping()
        checks["database"] = "ok"
    except DatabaseUnavailable as exc:
        checks["database"], errors["database"] = "unavailable", str(exc)
    failed = sorted(errors)
    if not failed:
        return checks
    log.warning("not_ready", extra={"checks": errors})
    return JSONResponse(
        {"type": TYPE_BASE + "not-ready", "title": "Service Unavailable", "status": 503,
         "detail": f"unreachable: {', '.join(failed)}", "instance": "/readyz",
         "checks": checks},
        status_code=503, media_type=MEDIA_TYPE)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(metrics: MetricsDep) -> Response:
    """The text exposition format of the API's metrics."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
