"""The console's sessions: a signed cookie holding a token's SHA-256, and its CSRF token.

A session is stateless, so it works on every replica that shares the secret
(``LONGTASK_API_SESSION_SECRET``): the cookie's value is ``v1.<payload>.<mac>``, the payload
the base64url JSON ``{"sha256", "exp", "nonce"}`` and the mac HMAC-SHA256 over it with the
secret. The token itself is never in it. Each request looks the hash up in the tokens as
they stand (:meth:`longtask.api.auth.TokenStore.lookup_hash`), so revoking a token ends its
sessions at once. The CSRF token is an HMAC of the session's nonce under the same secret:
bound to one session, known to the page from ``GET /console/session``, and required in
``X-CSRF-Token`` on every unsafe request authenticated by the cookie (OWASP's "signed
double-submit" pattern); bearer-token requests carry no cookie and need none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "longtask_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_VERSION = "v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """A session read from a valid cookie: the token's hex SHA-256, when it ends (Unix
    seconds) and its CSRF token."""

    token_sha256: str
    expires: int
    csrf: str


class SessionKeys:
    """Issues and reads session cookies signed with ``secret``, valid ``max_age`` seconds."""

    def __init__(self, secret: str, max_age: int) -> None:
        self._key = hashlib.sha256(b"longtask-console-session\0" + secret.encode()).digest()
        self.max_age = max_age

    def _mac(self, purpose: bytes, data: str) -> str:
        return _b64(hmac.new(self._key, purpose + b"\0" + data.encode(), "sha256").digest())

    def issue(self, token_sha256: str, now: float | None = None) -> tuple[str, Session]:
        """A new cookie value for the token whose hex SHA-256 is given, and its session."""
        expires = int(now if now is not None else time.time()) + self.max_age
        nonce = secrets.token_urlsafe(16)
        payload = _b64(json.dumps({"sha256": token_sha256, "exp": expires, "nonce": nonce},
                                  separators=(",", ":")).encode())
        value = f"{_VERSION}.{payload}.{self._mac(b'session', payload)}"
        return value, Session(token_sha256, expires, self._mac(b"csrf", nonce))

    def read(self, value: str, now: float | None = None) -> Session | None:
        """The session of a cookie value; ``None`` when it is malformed, signed with
        another secret, altered, or past its expiry."""
        parts = value.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            return None
        payload, mac = parts[1], parts[2]
        if not hmac.compare_digest(mac, self._mac(b"session", payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            digest, expires, nonce = str(data["sha256"]), int(data["exp"]), str(data["nonce"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if expires <= (now if now is not None else time.time()):
            return None
        return Session(digest, expires, self._mac(b"csrf", nonce))


def csrf_matches(session: Session, header: str | None) -> bool:
    """Whether a request's ``X-CSRF-Token`` is the session's (compared in constant time)."""
    return header is not None and hmac.compare_digest(header.encode(), session.csrf.encode())
