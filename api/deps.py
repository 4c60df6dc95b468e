"""Dependencies as ``Annotated`` aliases, one place (the FastAPI full-stack template's way).

Routes take ``SettingsDep``, ``TasksDep``, ``DatabaseDep``, ``MetricsDep``,
``ValidationsDep``, ``SessionsDep`` and one of
``ViewerDep`` / ``OperatorDep`` / ``AdminDep`` (the caller, who must hold at least that
role). Tests may swap any of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from longtask.api.auth import Principal, Role, TokenStore
from longtask.api.console.session import (
    COOKIE,
    CSRF_HEADER,
    SAFE_METHODS,
    SessionKeys,
    csrf_matches,
)
from longtask.api.db import Database
from longtask.api.kube import Tasks
from longtask.api.metrics import Metrics
from longtask.api.problems import ApiProblem
from longtask.api.settings import ApiSettings
from longtask.api.validation_pool import ValidationPool

REALM = "longtask"


def get_settings(request: Request) -> ApiSettings:
    """The app's settings."""
    settings: ApiSettings = request.app.state.settings
    return settings


def get_tasks(request: Request) -> Tasks:
    """The LongTask client of the app's namespace."""
    tasks: Tasks = request.app.state.tasks
    return tasks


def get_database(request: Request) -> Database:
    """The app's connection pool."""
    database: Database = request.app.state.database
    return database


def get_metrics(request: Request) -> Metrics:
    """The app's metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_validations(request: Request) -> ValidationPool:
    """The app's pool of dry runs."""
    pool: ValidationPool = request.app.state.validations
    return pool


def get_token_store(request: Request) -> TokenStore:
    """The configured bearer tokens."""
    store: TokenStore = request.app.state.tokens
    return store


def get_sessions(request: Request) -> SessionKeys:
    """The keys the console's session cookies are signed with."""
    sessions: SessionKeys = request.app.state.sessions
    return sessions


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
TasksDep = Annotated[Tasks, Depends(get_tasks)]
DatabaseDep = Annotated[Database, Depends(get_database)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
TokenStoreDep = Annotated[TokenStore, Depends(get_token_store)]
ValidationsDep = Annotated[ValidationPool, Depends(get_validations)]
SessionsDep = Annotated[SessionKeys, Depends(get_sessions)]

_bearer = HTTPBearer(auto_error=False, description="A token configured for the API (hashed)")


def _unauthorized(detail: str, error: str | None) -> ApiProblem:
    # RFC 6750 section 3: the challenge names the realm, and the error for a bad token.
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return ApiProblem(401, "unauthorized", "Unauthorized", detail,
                      headers={"WWW-Authenticate": challenge})


def get_principal(
    request: Request,
    store: TokenStoreDep,
    sessions: SessionsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller behind ``Authorization: Bearer <token>``, else behind the console's
    session cookie (:mod:`longtask.api.console.session`); 401 when missing or unknown.

    With the cookie, an unsafe request (not GET, HEAD, OPTIONS) must carry the session's
    ``X-CSRF-Token``, else 403; and the token the session was made with must still be
    configured, else 401 (revoking a token ends its sessions).
    """
    if credentials is not None:
        principal = store.lookup(credentials.credentials)
        if principal is None:
            raise _unauthorized("the bearer token is not valid", "invalid_token")
    else:
        cookie = request.cookies.get(COOKIE)
        if cookie is None:
            raise _unauthorized("send 'Authorization: Bearer <token>'", None)
        session = sessions.read(cookie)
        if session is None:
            raise _unauthorized("the console session has ended or is not valid: sign in again",
                                "invalid_token")
        if request.method not in SAFE_METHODS and not csrf_matches(
                session, request.headers.get(CSRF_HEADER)):
            raise ApiProblem(403, "csrf-token-mismatch", "Forbidden",
                             f"a request made with the console's session cookie must carry "
                             f"its {CSRF_HEADER} header (from GET /console/session)")
        principal = store.lookup_hash(session.token_sha256)
        if principal is None:
            raise _unauthorized("the token this console session was made with is no longer "
                                "valid: sign in again", "invalid_token")
    request.state.subject = principal.subject
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(role: Role) -> Callable[[Principal], Principal]:
    """A dependency passing callers with at least ``role``; 403 for the others."""
    def check(principal: PrincipalDep) -> Principal:
        if principal.role < role:
            raise ApiProblem(
                403, "forbidden", "Forbidden",
                f"this needs the {role.name.lower()} role; the token has "
                f"{principal.role.name.lower()}")
        return principal
    return check


ViewerDep = Annotated[Principal, Depends(require(Role.VIEWER))]
OperatorDep = Annotated[Principal, Depends(require(Role.OPERATOR))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]


def organization_for(principal: Principal, requested: str | None) -> str:
    """The organization a create or upload acts for.

    ``requested`` when the caller may use it (403 otherwise), else the caller's only
    organization (422 when it has several).
    """
    if requested is not None:
        if not principal.may_use(requested):
            raise ApiProblem(403, "forbidden-organization", "Forbidden",
                             f"this token may not act for organization {requested!r}")
        return requested
    own = sorted(principal.organizations)
    if len(own) == 1 and not principal.all_organizations:
        return own[0]
    raise ApiProblem(422, "invalid-request", "Unprocessable Content",
                     "say which organization: this token may act for several")
