"""The runner's exception hierarchy; each docstring is the message's gist.

:class:`TaskFailed` and its subclasses are permanent (the runner exits with
``EXIT_FAILED``, the Job is not retried); :class:`Stopped` and :class:`Fenced` are not
failures (the task resumes from its checkpoint in a later pod).
"""

from __future__ import annotations


class RunnerError(Exception):
    """Base of every error the runner raises on purpose."""


class TaskFailed(RunnerError):
    """The task cannot complete; retrying will not help. The message says what to fix."""


class FileUnreadable(TaskFailed):
    """The input file cannot be read at all (encoding, structure); nothing was written."""


class HeaderError(TaskFailed):
    """The file's header does not fit the target (missing, unknown or duplicate columns)."""


class TooManyRowErrors(TaskFailed):
    """More rows were bad than the task's ``maxRowErrors`` allows."""


class Stopped(RunnerError):
    """A stop was requested (SIGTERM): the open chunk was rolled back, nothing written."""


class Fenced(RunnerError):
    """Another runner took the task's lease (a newer epoch); this one wrote nothing."""
