"""Bearer tokens (RFC 6750): who is calling, with which role, for which organizations.

Tokens are configured as SHA-256 hashes, never in plain text, in a YAML or JSON document
(a key of a Kubernetes Secret, mounted as a file or passed in an environment variable)::

    tokens:
      - sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        subject: support-alice           # recorded as requested-by on control actions
        role: operator                   # viewer | operator | admin
        organizations: [acme, globex]    # slugs; ["*"] (all) only for an admin

A top-level list of entries is accepted too. ``python -m longtask.api token`` makes a new
token and prints its entry. Roles: ``viewer`` reads; ``operator`` also uploads files,
creates tasks and pauses, resumes, terminates and patches them; ``admin`` may do all of
that and is the only role that may hold every organization (``"*"``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml
from longtask.api.errors import ApiError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger("longtask.api.auth")

ALL_ORGANIZATIONS = "*"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Role(IntEnum):
    """What a token may do; each role includes the ones below it."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        """``"viewer"`` -> ``Role.VIEWER``; ``ValueError`` for other names."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r} (viewer, operator or admin)") from None


class TokenEntry(BaseModel):
    """One configured token: the hash of the secret and what its holder may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(description="Hex SHA-256 of the token, lower case")
    subject: str = Field(min_length=1, max_length=200)
    role: str
    organizations: tuple[str, ...] = Field(min_length=1)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.strip().lower()
        if not _HEX64.match(value):
            raise ValueError("must be the 64 hex digits of a SHA-256 (store hashes, not tokens)")
        return value

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        Role.parse(value)
        return value.lower()


@dataclass(frozen=True)
class Principal:
    """The caller: ``subject`` (for the record), ``role``, and the organizations it may use."""

    subject: str
    role: Role
    organizations: frozenset[str]

    @property
    def all_organizations(self) -> bool:
        """True for an admin configured with ``organizations: ["*"]``."""
        return ALL_ORGANIZATIONS in self.organizations

    def may_use(self, organization: str) -> bool:
        """Whether this caller may see and act on ``organization``'s tasks and files."""
        return self.all_organizations or organization in self.organizations

    def visible(self, organizations: Iterable[str]) -> list[str]:
        """The ones of ``organizations`` this caller may use, in order."""
        return [o for o in organizations if self.may_use(o)]


class TokenConfigError(ApiError, ValueError):
    """The token document cannot be read or breaks a rule; the message says where."""


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token's UTF-8 bytes: the form tokens are configured in."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str, *, refuse: frozenset[str] = frozenset()) -> dict[str, Principal]:
    """Parse a token document into ``{sha256: Principal}``.

    ``refuse`` holds hashes that must not appear (placeholder secrets). Raises
    :class:`TokenConfigError` naming the entry at fault.
    """
    try:
        data: Any = yaml.safe_load(text) if text.strip() else []
    except yaml.YAMLError as exc:
        raise TokenConfigError(f"token document is not YAML or JSON: {exc}") from None
    if isinstance(data, Mapping):
        data = data.get("tokens", [])
    if not isinstance(data, list):
        raise TokenConfigError("token document must be a list of entries or {tokens: [...]}")
    table: dict[str, Principal] = {}
    for number, raw in enumerate(data, start=1):
        try:
            entry = TokenEntry.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise TokenConfigError(f"token entry {number}: {problems}") from None
        role = Role.parse(entry.role)
        orgs = frozenset(entry.organizations)
        where = f"token entry {number} ({entry.subject})"
        if ALL_ORGANIZATIONS in orgs and role is not Role.ADMIN:
            raise TokenConfigError(f"{where}: only an admin may hold every organization ('*')")
        if entry.sha256 in refuse:
            raise TokenConfigError(f"{where}: the token is a placeholder secret; make a real one")
        if entry.sha256 in table:
            raise TokenConfigError(f"{where}: the same token hash appears twice")
        table[entry.sha256] = Principal(entry.subject, role, orgs)
    return table


class TokenStore:
    """The configured tokens, read from a file (re-read when it changes) and/or a string.

    A mounted Secret is updated in place by the kubelet; the file's modification time and
    size are checked on each look-up, so a rotated token works without a restart. The file
    fails closed: when it is deleted, becomes unreadable or no longer parses, its tokens are
    revoked at once (the string's stay), the failure is logged and counted
    (``reload_failures``), and the file is tried again on every look-up. With
    ``require_tokens`` (outside development) a store that starts with no token at all is
    refused: an API nobody can call is a misconfiguration, not a lock.
    """

    def __init__(self, *, file: Path | None, text: str | None,
                 refuse: frozenset[str] = frozenset(), require_tokens: bool = False) -> None:
        self._file = file
        self._refuse = refuse
        self._lock = threading.Lock()
        self._static = parse_tokens(text, refuse=refuse) if text else {}
        self._stamp: tuple[int, int] | None = None
        self._from_file: dict[str, Principal] = {}
        self._failed: str | None = None
        self.reload_failures = 0
        if file is not None:
            self._reload(strict=True)
        if require_tokens and len(self) == 0:
            where = f"{file}" if file is not None else "LONGTASK_API_TOKENS"
            raise TokenConfigError(
                f"{where}: the token document holds no token, so nobody could call the API; "
                "add one (python -m longtask.api token) or set "
                "LONGTASK_API_ENVIRONMENT=development")

    def _reload(self, *, strict: bool) -> None:
        assert self._file is not None
        try:
            stat = os.stat(self._file)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            table = parse_tokens(self._file.read_text(encoding="utf-8"), refuse=self._refuse)
        except (OSError, TokenConfigError) as exc:
            if strict:
                raise TokenConfigError(f"{self._file}: {exc}") from None
            reason = str(exc)
            if self._failed != reason:  # once per failure, not once per request
                self.reload_failures += 1
                log.error("tokens_revoked", extra={
                    "file": str(self._file), "error": reason,
                    "revoked": len(self._from_file)})
            self._from_file, self._stamp, self._failed = {}, None, reason
            return
        self._from_file, self._stamp, self._failed = table, stamp, None
        log.info("tokens_loaded", extra={"file": str(self._file), "count": len(table)})

    def lookup(self, token: str) -> Principal | None:
        """The principal holding ``token``, or ``None`` when no entry has its hash."""
        return self.lookup_hash(hash_token(token))

    def lookup_hash(self, digest: str) -> Principal | None:
        """The principal of the token whose hex SHA-256 is ``digest`` (a console session
        carries it), or ``None`` when no entry has it now: a revoked token ends its
        sessions."""
        if self._file is not None:
            with self._lock:
                self._reload(strict=False)
        return self._from_file.get(digest) or self._static.get(digest)

    @property
    def file_failure(self) -> str | None:
        """Why the token file's tokens are revoked now, or None while it reads well."""
        return self._failed

    def __len__(self) -> int:
        return len(self._from_file) + len(self._static)
