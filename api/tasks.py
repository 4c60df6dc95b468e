"""``/v1/tasks``: create, list, read, control, patch, delete; row errors, output, history,
watch.

One router made of one module per concern: ``task_create``, ``task_read`` (with row errors
and history), ``task_control``, ``task_delete``, ``task_output``, ``task_watch``; what they
share is in ``task_common``.

The API edits ``spec`` (and the requested-by / reason annotations, in the same merge patch)
and reads ``status``; the operator does the rest. A task of an organization the caller may
not use is answered exactly like a missing one (404).
"""

from __future__ import annotations

from fastapi import APIRouter
from longtask.api import (
    task_control,
    task_create,
    task_delete,
    task_output,
    task_read,
    task_watch,
)
from longtask.api.task_output import DigestCache

__all__ = ["DigestCache", "router"]

router = APIRouter()
for _part in (task_create, task_read, task_control, task_delete, task_output, task_watch):
    router.include_router(_part.router)
