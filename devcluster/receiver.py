"""A webhook receiver on loopback, for the tests: what a pipeline's endpoint would be.

:class:`Receiver` serves HTTP on ``127.0.0.1`` in a thread of its own, checks every
request's Standard Webhooks signature with the ``standardwebhooks`` library and the
organization's secret, parses it as a CloudEvent (the ``cloudevents`` SDK, binary mode),
and answers ``status`` (settable while it runs) after ``delay`` seconds. Every request is
kept in :attr:`received`, valid or not, in arrival order.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from cloudevents.core.bindings.http import HTTPMessage, from_binary_event
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def new_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Received:
    """One request: its headers (lower-case names), body, whether the signature held, the
    CloudEvent's attributes and data (None when it did not parse) and the answer given."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    attributes: dict[str, Any] | None
    data: dict[str, Any] | None
    status: int
    at: float = field(default_factory=time.monotonic)


class Receiver:
    """A webhook endpoint on a free loopback port; ``url`` once started (``with``)."""

    def __init__(self, secret: str | None = None, *, status: int = 200,
                 delay: float = 0.0) -> None:
        self.secret = secret or new_secret()
        self.status = status
        self.delay = delay
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/hook``."""
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(min(length, 1 << 20))
                receiver._note(dict(self.headers.items()), body)
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="webhook-receiver")
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _note(self, raw: dict[str, str], body: bytes) -> None:
        headers = {k.lower(): v for k, v in raw.items()}
        try:
            Webhook(self.secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        try:
            event = from_binary_event(HTTPMessage(headers=headers, body=body))
            attributes: dict[str, Any] | None = dict(event.get_attributes())
            data = event.get_data()
            parsed = data if isinstance(data, dict) else json.loads(data or b"null")
        except Exception:  # noqa: BLE001 (anything unparsable is kept as such)
            attributes, parsed = None, None
        with self._lock:
            self.received.append(Received(headers, body, verified, attributes, parsed,
                                          self.status))

    def accepted(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def all(self) -> list[Received]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self.received)
