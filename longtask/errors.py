"""The errors the shared code raises on purpose; each docstring is the message's gist.

:class:`TaskFailed` and its subclasses are permanent: retrying will not help, and the
message says what to fix. The runner exits with ``EXIT_FAILED`` on one; the API answers the
dry run's or the upload's caller with it. The runner adds its own stops and fences
(:mod:`longtask.runner.errors`).
"""

from __future__ import annotations


class LongTaskError(Exception):
    """Base of every error the shared code (``longtask``) raises on purpose."""


class TaskFailed(LongTaskError):
    """The task cannot complete; retrying will not help. The message says what to fix."""


class FileUnreadable(TaskFailed):
    """The input file cannot be read at all (encoding, structure); nothing was written."""


class HeaderError(TaskFailed):
    """The file's header does not fit the target (missing, unknown or duplicate columns)."""
