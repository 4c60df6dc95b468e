"""The console's session cookie as the API's auth dependency sees it: accepted by every
replica sharing the secret, ended by revoking its token, refused when altered, expired or
signed with another secret, and unsafe requests with it refused without the CSRF header."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pydantic
import pytest
import yaml
from api_support import TOKENS, token_of
from longtask.api.auth import hash_token
from longtask.api.console.session import COOKIE, SessionKeys
from longtask.api.settings import ApiSettings

pytestmark = pytest.mark.cluster


def sign_in(url: str, token: str) -> httpx.Client:
    """A client holding the session cookie of ``token`` (and no bearer token)."""
    answer = httpx.post(f"{url}/console/session", data={"token": token}, timeout=10)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/", answer.text
    cookie = answer.cookies[COOKIE]
    return httpx.Client(base_url=url, cookies={COOKIE: cookie}, timeout=10)


def test_a_session_made_by_one_replica_is_accepted_by_another(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    first, second = serve(api_settings), serve(api_settings)
    with sign_in(first, token_of("operator")) as client:
        client.base_url = httpx.URL(second)
        who = client.get("/console/session")
        listed = client.get("/v1/tasks")

    assert who.status_code == 200, who.text
    assert (who.json()["subject"], who.json()["organizations"]) == ("support-alice", ["acme"])
    assert listed.status_code == 200, listed.text


def test_revoking_the_token_ends_its_sessions(api_url: str, token_file: Path) -> None:
    with sign_in(api_url, token_of("operator")) as client:
        assert client.get("/v1/tasks").status_code == 200
        kept = [{"sha256": hash_token(token_of(r)), **e} for r, e in TOKENS.items()
                if r != "operator"]
        token_file.write_text(yaml.safe_dump({"tokens": kept}))

        listed, who = client.get("/v1/tasks"), client.get("/console/session")

    assert (listed.status_code, who.status_code) == (401, 401)
    assert "no longer valid" in listed.json()["detail"]


def test_a_cookie_altered_expired_or_signed_with_another_secret_is_refused(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    url = serve(api_settings)
    other = serve(api_settings.model_copy(update={"session_secret": "x" * 40}))
    digest = hash_token(token_of("operator"))
    keys = SessionKeys(api_settings.session_secret or "", 60)
    good, _ = keys.issue(digest)
    expired, _ = keys.issue(digest, now=1_000_000)
    version, payload, mac = good.split(".")
    altered = f"{version}.{payload[:-2]}xx.{mac}"

    def status(base: str, value: str) -> int:
        with httpx.Client(base_url=base, cookies={COOKIE: value}, timeout=10) as client:
            return client.get("/v1/tasks").status_code

    assert status(url, good) == 200
    assert [status(url, altered), status(url, expired), status(other, good)] == [401, 401, 401]
    assert keys.read(good, now=keys.read(good).expires) is None    # type: ignore[union-attr]


def test_an_unsafe_request_with_the_cookie_needs_its_csrf_header(api_url: str) -> None:
    with sign_in(api_url, token_of("operator")) as client:
        csrf = client.get("/console/session").json()["csrfToken"]
        bare = client.post("/v1/tasks/nothing-here/pause", json={"reason": "r"})
        guessed = client.post("/v1/tasks/nothing-here/pause", json={"reason": "r"},
                              headers={"X-CSRF-Token": "guessed"})
        sent = client.post("/v1/tasks/nothing-here/pause", json={"reason": "r"},
                           headers={"X-CSRF-Token": csrf})
        out_bare = client.delete("/console/session")
        out = client.delete("/console/session", headers={"X-CSRF-Token": csrf})

    assert (bare.status_code, guessed.status_code) == (403, 403)
    assert bare.json()["type"].endswith("/csrf-token-mismatch")
    assert sent.status_code == 404                     # past the check: no such task
    assert out_bare.status_code == 403
    assert out.status_code == 204 and f'{COOKIE}=""' in out.headers["set-cookie"]


def test_a_wrong_token_makes_no_session(api_url: str) -> None:
    answer = httpx.post(f"{api_url}/console/session", data={"token": "nobody-holds-this"},
                        timeout=10)

    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/?signin=refused"
    assert COOKIE not in answer.cookies


def test_production_refuses_a_missing_short_or_placeholder_session_secret(
        api_settings: ApiSettings) -> None:
    fields = api_settings.model_dump()
    for secret in (None, "", "short", "changethis"):
        with pytest.raises(pydantic.ValidationError, match="LONGTASK_API_SESSION_SECRET"):
            ApiSettings(**{**fields, "session_secret": secret})
    assert ApiSettings(**{**fields, "environment": "development",
                          "session_secret": None}).session_secret is None


def test_the_cookie_is_secure_when_tls_ends_before_the_api(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    plain = serve(api_settings)
    behind_tls = serve(api_settings.model_copy(update={"session_cookie_secure": True}))

    flags = {}
    for name, url in (("plain", plain), ("behind_tls", behind_tls)):
        answer = httpx.post(f"{url}/console/session", data={"token": token_of("operator")},
                            timeout=10)
        assert answer.status_code == 303, answer.text
        flags[name] = {f.strip().lower() for f in answer.headers["set-cookie"].split(";")}

    assert {"httponly", "path=/", "samesite=strict"} <= flags["plain"]
    assert "secure" not in flags["plain"] and "secure" in flags["behind_tls"]
