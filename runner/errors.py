"""The runner's exception hierarchy; each docstring is the message's gist.

:class:`TaskFailed` and its subclasses (:class:`FileUnreadable`, :class:`HeaderError`, shared
with the API through :mod:`longtask.errors`, and :class:`TooManyRowErrors`) are permanent
(the runner exits with ``EXIT_FAILED``, the Job is not retried); :class:`Stopped` and
:class:`Fenced` are not failures (the task resumes from its checkpoint in a later pod).
Every one is a :class:`longtask.errors.LongTaskError`.
"""

from __future__ import annotations

from longtask.errors import FileUnreadable, HeaderError, LongTaskError, TaskFailed

__all__ = ["Fenced", "FileUnreadable", "HeaderError", "RunnerError", "Stopped", "TaskFailed",
           "TooManyRowErrors"]


class RunnerError(LongTaskError):
    """Base of the runner's own errors that are not failures: a stop or a lost lease."""


class TooManyRowErrors(TaskFailed):
    """More rows were bad than the task's ``maxRowErrors`` allows."""


class Stopped(RunnerError):
    """A stop was requested (SIGTERM): the open chunk was rolled back, nothing written."""


class Fenced(RunnerError):
    """Another runner took the task's lease (a newer epoch); this one wrote nothing."""
