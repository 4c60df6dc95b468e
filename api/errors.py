"""The API's error base: every error the API raises on purpose is an :class:`ApiError`.

:class:`~longtask.api.problems.ApiProblem` is the one a handler raises to answer with a
problem document; the others (the database, the Kubernetes client, uploads, tokens) are
turned into one where they are caught, or stop the process at start (a bad token file).
"""

from __future__ import annotations

from longtask.errors import LongTaskError


class ApiError(LongTaskError):
    """Base of every error the API raises on purpose."""
