"""The operator's error base: every error the operator raises on purpose is an
:class:`OperatorError` (kopf's own ``TemporaryError`` and ``PermanentError``, which tell
kopf when to retry, stay kopf's)."""

from __future__ import annotations

from longtask.errors import LongTaskError


class OperatorError(LongTaskError):
    """Base of every error the operator raises on purpose."""
