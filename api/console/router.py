"""``/console/``: the page and its assets, and ``/console/session`` (sign in, who, sign out).

The page is static (``static/index.html``, ``console.css``, ``console.js``, shipped in the
package) and calls the REST API from the same origin with the session cookie; every rule it
shows is the API's. Signing in is a plain form post of the token, so the token is never in
the page's script or storage: the answer sets the cookie (``HttpOnly``, ``SameSite=Strict``,
``Secure`` over https, ``Path=/``) and redirects to the page. These routes are the
console's own, not the REST API's: they are left out of the OpenAPI document (api/README.md
lists them).
"""

from __future__ import annotations

import datetime as dt
import logging
from importlib import resources
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from longtask.api.auth import Principal, hash_token
from longtask.api.console.session import COOKIE, Session, SessionKeys, csrf_matches
from longtask.api.deps import SessionsDep, SettingsDep, TokenStoreDep
from longtask.api.problems import ApiProblem
from longtask.api.settings import ApiSettings
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

log = logging.getLogger("longtask.api.console")
router = APIRouter(prefix="/console", tags=["console"])

STATIC = resources.files("longtask.api.console") / "static"
ASSETS = {"console.css": "text/css; charset=utf-8",
          "console.js": "text/javascript; charset=utf-8"}
# The page loads only its own assets and talks only to its own origin; nothing inline.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


class SessionPublic(BaseModel):
    """Who is signed in: ``subject``, ``role``, ``organizations`` (``["*"]``: all), when the
    session ends, and the ``csrfToken`` every unsafe request must send as X-CSRF-Token."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    subject: str
    role: Literal["viewer", "operator", "admin"]
    organizations: list[str]
    expires_at: dt.datetime
    csrf_token: str


@router.get("", include_in_schema=False)
def console_root() -> RedirectResponse:
    """``/console`` -> ``/console/``."""
    return RedirectResponse("/console/", status_code=308)


@router.get("/", include_in_schema=False)
def console_page() -> Response:
    """The console's one page."""
    return Response((STATIC / "index.html").read_bytes(), media_type="text/html; charset=utf-8",
                    headers=PAGE_HEADERS)


@router.get("/static/{asset}", include_in_schema=False)
def console_asset(asset: str) -> Response:
    """One of the page's assets; 404 for any other name."""
    if asset not in ASSETS:
        raise ApiProblem(404, "not-found", "Not Found", f"no console asset {asset!r}")
    return Response((STATIC / asset).read_bytes(), media_type=ASSETS[asset],
                    headers=PAGE_HEADERS)


def _same_origin(request: Request) -> bool:
    """False for a form posted from another site (login CSRF): the browser's
    ``Sec-Fetch-Site`` says where it came from, else its ``Origin``; a client sending
    neither is no browser page."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.headers.get('host')}"


@router.post("/session", include_in_schema=False, status_code=303,
             response_class=RedirectResponse)
def sign_in(request: Request, token: Annotated[str, Form(max_length=4096)],
            store: TokenStoreDep, sessions: SessionsDep, settings: SettingsDep) -> Response:
    """A form post of an API token: a known one sets the session cookie and redirects to
    ``/console/``; an unknown one redirects to ``/console/?signin=refused`` and sets
    nothing. 403 when posted from another origin."""
    if not _same_origin(request):
        raise ApiProblem(403, "cross-origin", "Forbidden",
                         "sign in from the console's own page")
    principal = store.lookup(token.strip())
    if principal is None:
        log.info("console_sign_in_refused")
        return RedirectResponse("/console/?signin=refused", status_code=303)
    value, _session = sessions.issue(hash_token(token.strip()))
    answer = RedirectResponse("/console/", status_code=303)
    answer.set_cookie(COOKIE, value, max_age=sessions.max_age, path="/", httponly=True,
                      samesite="strict", secure=_secure(request, settings))
    log.info("console_signed_in", extra={"subject": principal.subject})
    return answer


def _secure(request: Request, settings: ApiSettings) -> bool:
    """The cookie's Secure flag: the setting, else whether the request came over https."""
    if settings.session_cookie_secure is not None:
        return settings.session_cookie_secure
    return request.url.scheme == "https"


def _session(request: Request, store: TokenStoreDep,
             sessions: SessionKeys) -> tuple[Session, Principal]:
    cookie = request.cookies.get(COOKIE)
    session = sessions.read(cookie) if cookie else None
    principal = store.lookup_hash(session.token_sha256) if session else None
    if session is None or principal is None:
        raise ApiProblem(401, "unauthorized", "Unauthorized",
                         "not signed in to the console (or the session or its token ended)")
    return session, principal


@router.get("/session", response_model=SessionPublic, include_in_schema=False)
def who(request: Request, store: TokenStoreDep, sessions: SessionsDep) -> SessionPublic:
    """The signed-in subject, role and organizations, and the session's CSRF token; 401
    without a valid session."""
    session, principal = _session(request, store, sessions)
    request.state.subject = principal.subject
    return SessionPublic(
        subject=principal.subject, role=principal.role.name.lower(),  # type: ignore[arg-type]
        organizations=sorted(principal.organizations),
        expires_at=dt.datetime.fromtimestamp(session.expires, dt.UTC),
        csrf_token=session.csrf)


@router.delete("/session", status_code=204, include_in_schema=False)
def sign_out(request: Request, store: TokenStoreDep, sessions: SessionsDep,
             settings: SettingsDep) -> Response:
    """Clears the cookie (204). Needs the session's X-CSRF-Token, else 403."""
    session, principal = _session(request, store, sessions)
    if not csrf_matches(session, request.headers.get("x-csrf-token")):
        raise ApiProblem(403, "csrf-token-mismatch", "Forbidden",
                         "signing out needs the session's X-CSRF-Token header")
    answer = Response(status_code=204)
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                         secure=_secure(request, settings))
    log.info("console_signed_out", extra={"subject": principal.subject})
    return answer
