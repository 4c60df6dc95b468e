"""Errors as problem details (RFC 9457), ``application/problem+json``.

Every error response has ``type``, ``title``, ``status``, ``detail`` and ``instance`` (the
request path). Where a request field is at fault, ``errors`` lists each with a ``pointer``
(a JSON Pointer into the request body, RFC 6901, as in RFC 9457 section 3's example) or a
``parameter`` (query, path or header name), a dotted ``field`` path and a ``detail``.
A 5xx is a bug or an unreachable dependency; its ``detail`` never holds a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from longtask.api.errors import ApiError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from longtask import tasktypes

log = logging.getLogger("longtask.api")

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://collect.atlan.com/problems/"


class FieldError(BaseModel):
    """One field at fault: where (``pointer`` or ``parameter``, and ``field``) and why."""

    detail: str
    field: str | None = Field(default=None, description="Dotted path, e.g. params.fileId")
    pointer: str | None = Field(default=None, description="JSON Pointer, e.g. #/params/fileId")
    parameter: str | None = Field(default=None, description="Query, path or header name")


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


_DESCRIPTIONS = {
    400: "Malformed request", 401: "Missing or unknown bearer token",
    403: "The token's role or organizations do not allow it",
    404: "No such object (or one of an organization the token does not hold)",
    408: "The request body came too slowly", 409: "Refused in the object's current state",
    410: "Removed by the retention (when and why in the body)",
    413: "Content too large", 415: "Unsupported media type",
    422: "The request breaks a rule (field paths in errors)",
    429: "The caller holds its share of a bounded resource (see Retry-After)",
    507: "The organization's storage quota would be passed (the numbers in the body)",
    502: "Kubernetes refused a call the API makes", 503: "Kubernetes or the database unreachable",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting problem details for ``codes``."""
    return {
        code: {"model": Problem, "description": _DESCRIPTIONS.get(code, "Problem"),
               "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for code in codes
    }


COMMON_RESPONSES = responses(401, 403, 404, 422, 502, 503)
"""Every authenticated route may answer these."""


class ApiProblem(ApiError):
    """Raise to answer with a problem; ``slug`` names the problem type (``TYPE_BASE`` + slug)."""

    def __init__(self, status: int, slug: str, title: str, detail: str | None = None, *,
                 errors: Sequence[FieldError] = (), headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def body_error(path: Sequence[str | int], detail: str) -> FieldError:
    """A :class:`FieldError` for a location in the request body (``["params", "fileId"]``)."""
    parts = [str(p) for p in path]
    pointer = "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)
    return FieldError(detail=detail, field=".".join(parts) or None, pointer=pointer)


def not_found(what: str) -> ApiProblem:
    """404 for a missing object, or one of an organization the caller may not use."""
    return ApiProblem(404, "not-found", "Not Found", f"{what} does not exist")


def invalid(detail: str, errors: Sequence[FieldError]) -> ApiProblem:
    """422 for a well-formed request whose content breaks a rule."""
    return ApiProblem(422, "invalid-request", "Unprocessable Content", detail, errors=errors)


def problem_response(request: Request, status: int, slug: str | None, title: str,
                     detail: str | None, *, errors: Sequence[FieldError] = (),
                     headers: Mapping[str, str] | None = None,
                     extra: Mapping[str, Any] | None = None) -> JSONResponse:
    """The response for a problem (``slug`` None means ``about:blank``)."""
    body = Problem(
        type=TYPE_BASE + slug if slug else "about:blank",
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=list(errors) or None,
    ).model_dump(exclude_none=True)
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=dict(headers or {}),
                        media_type=MEDIA_TYPE)


def _location_error(loc: Sequence[Any], msg: str) -> FieldError:
    where, *rest = [str(p) for p in loc] or ["body"]
    if where == "body":
        return body_error(rest, msg)
    name = rest[0] if rest else where
    return FieldError(detail=msg, field=".".join(rest) or None, parameter=name)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_location_error(e.get("loc", ()), tasktypes.error_message(e))
              for e in exc.errors()]
    summary = "; ".join(f"{e.field or e.parameter or 'body'}: {e.detail}" for e in errors[:5])
    return problem_response(request, 422, "invalid-request", "Unprocessable Content",
                            f"the request does not fit the schema: {summary}", errors=errors)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(request, exc.status, exc.slug, exc.title, exc.detail,
                            errors=exc.errors, headers=exc.headers, extra=exc.extra)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    from http import HTTPStatus

    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    return problem_response(request, exc.status_code, None, title, detail,
                            headers=getattr(exc, "headers", None))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("request_failed", exc_info=exc,
              extra={"method": request.method, "path": request.url.path})
    return problem_response(request, 500, "internal-error", "Internal Server Error",
                            "the server failed to answer; the failure is logged")


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem details object."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(ApiProblem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes`` (paths in ``exempt`` stream their own).

    A declared ``Content-Length`` is checked before anything is read; a chunked body is
    counted as it arrives and refused once it crosses the limit, so no handler ever holds
    more than the limit in memory.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: Sequence[str] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = tuple(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            response = problem_response(Request(scope), 413, "body-too-large",
                                        "Content Too Large", self._detail())
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise StarletteHTTPException(413, self._detail())
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> str:
        return f"the request body is larger than the limit of {self.max_bytes} bytes"
