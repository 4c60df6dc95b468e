"""The command's errors and exit codes: one base, :class:`CliError`, whose subclasses say
what went wrong as a problem details object (RFC 9457 shape), whoever found it."""

from __future__ import annotations

from typing import Any

import httpx

# Exit codes (cli/README.md, "Exit codes"). 2 is also click's own for a usage error.
OK = 0
ERROR = 1
USAGE = 2
OTHER_OUTCOME = 3
TIMED_OUT = 4


class CliError(Exception):
    """A failure the command reports (``error: ...`` on stderr) and exits with."""

    exit_code = ERROR
    title = "Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def problem(self) -> dict[str, Any]:
        """The failure as a problem details object (``title``, ``detail``, maybe more)."""
        return {"type": "about:blank", "title": self.title, "detail": self.detail}


class UsageError(CliError):
    """Bad input given to the command itself: an option, a task file, the config file."""

    exit_code = USAGE
    title = "Bad input"


class NotLoggedIn(UsageError):
    """No API URL or token: neither the environment nor the config file holds one."""

    title = "Not logged in"


class Unreachable(CliError):
    """The API did not answer (connection refused, DNS, TLS, a timeout)."""

    title = "API unreachable"


class DownloadFailed(CliError):
    """An output download that does not check out: short, or its SHA-256 differs."""

    title = "Download failed"


class ProblemAnswered(CliError):
    """The API answered with an error: its problem details (RFC 9457) as it sent them.

    ``body`` is the problem object (for an answer that is not problem JSON, one made of its
    status and the start of its text); ``status`` the HTTP status.
    """

    def __init__(self, body: dict[str, Any], status: int) -> None:
        self.body = body
        self.status = status
        super().__init__(str(body.get("detail") or body.get("title") or f"HTTP {status}"))

    @classmethod
    def from_response(cls, response: httpx.Response) -> ProblemAnswered:
        """Read the problem of an error ``response`` (its body must have been read)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {"type": "about:blank", "title": response.reason_phrase,
                    "status": response.status_code,
                    "detail": response.text[:300].strip() or None}
        body.setdefault("status", response.status_code)
        return cls(body, response.status_code)

    def problem(self) -> dict[str, Any]:
        return self.body
