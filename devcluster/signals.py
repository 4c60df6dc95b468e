"""Stop signals for the long-lived development commands (the stack, the demo).

A program started in the background by a non-interactive shell (``cmd &``) inherits SIGINT
ignored, and SIGTERM's default action ends a process without running any ``finally``: in
both cases whatever it started (PostgreSQL, the control plane, the operator, the API) and
its temporary data would be left behind. :func:`stop_on_signals` turns SIGINT, SIGTERM and
SIGHUP into :class:`Interrupted` raised in the main thread, so the usual ``finally`` and
``with`` blocks stop everything; :func:`wait` serves until one arrives.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A stop signal arrived; ``signum`` says which. A ``BaseException``, like
    ``KeyboardInterrupt``, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} received")
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGINT, SIGTERM or SIGHUP raises :class:`Interrupted`
    in the main thread; later ones are reported on stderr and otherwise ignored, so the
    clean-up that the first one started runs to its end. The previous handlers come back
    afterwards. Child processes started within get the default dispositions at exec."""
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Interrupted(signum)
        print(f"{signal.Signals(signum).name} received: already stopping", file=sys.stderr,
              flush=True)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def wait() -> None:
    """Sleep until a signal's handler raises (:class:`Interrupted` under
    :func:`stop_on_signals`)."""
    while True:
        signal.pause()
