"""The task types' run and rollback work, found through the registry by type name and mode.

Each :class:`~longtask.tasktypes.TaskType` names its run's
:class:`~longtask.runner.engine.Work` class and its rollback's steps as ``"module:attribute"``
paths (``runner`` and ``rollback``); the built-in types' steps are defined here, a plug-in's
in its own distribution (``docs/task-types.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from longtask.runner.engine import Mode, StopToken, TaskDefinition, Work
from longtask.runner.errors import TaskFailed
from longtask.runner.rollback import (
    DeleteInserted,
    DeleteOwned,
    RestoreDeleted,
    RestoreJournal,
    Rollback,
    Step,
)
from longtask.runner.tasks.common import Connector

from longtask import tasktypes
from longtask.settings import RunnerSettings

BASELINE_UPLOAD_ROLLBACK: tuple[Step, ...] = (
    RestoreJournal("baseline_records", ("data", "task_uid", "updated_at")),
    DeleteInserted("baseline_records"),
)
EXPORT_ROLLBACK: tuple[Step, ...] = (DeleteOwned("export_parts", "part"),)
# Memberships first (those of a team that stays stay with it), then the teams and users
# they pointed at.
BULK_TEAM_CREATE_ROLLBACK: tuple[Step, ...] = (
    DeleteInserted("team_memberships", kept_with=(("team_id", "teams"),)),
    DeleteInserted("teams", referenced_by=(("team_memberships", "team_id"),)),
    DeleteInserted("field_users", referenced_by=(("team_memberships", "user_id"),)),
)
BULK_SUBMISSION_DELETE_ROLLBACK: tuple[Step, ...] = (
    RestoreDeleted("submissions", ("id", "organization_id", "form_id", "submitted_at",
                                   "submitted_by", "data")),
)


def _resolve(path: str, type_name: str, what: str) -> Any:
    """The object ``"module:attribute"`` names; :class:`TaskFailed` when it is missing."""
    if not path:
        raise TaskFailed(f"task type {type_name!r} names no {what}")
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise TaskFailed(f"task type {type_name!r}: its {what} {path!r} cannot be found "
                         f"({type(exc).__name__}: {exc})") from None
    return target


def rollback_steps(type_name: str) -> Sequence[Step]:
    """The rollback's steps of ``type_name``, in order (:class:`TaskFailed` if unknown)."""
    try:
        task_type = tasktypes.get(type_name)
    except tasktypes.UnknownTaskType as exc:
        raise TaskFailed(str(exc)) from None
    steps = _resolve(task_type.rollback, type_name, "rollback")
    return tuple(steps)


def build_work(
    task: TaskDefinition,
    mode: Mode,
    read_conn: Any,
    stop: StopToken,
    settings: RunnerSettings,
    connect: Connector | None = None,
    *,
    read_ahead: bool = True,
) -> Work:
    """The :class:`Work` doing ``mode`` for ``task``; ``connect`` opens more read
    connections, ``read_ahead=False`` opens for the checks alone (see
    :class:`~longtask.runner.tasks.common.TaskWork`).

    Raises :class:`TaskFailed` when the type is unknown, its params do not fit its schema,
    or its run or rollback cannot be found.
    """
    try:
        params = tasktypes.parse_params(task.type, task.params)
    except (tasktypes.UnknownTaskType, tasktypes.ParamsError) as exc:
        raise TaskFailed(str(exc)) from None
    if mode == "rollback":
        return Rollback(task.uid, rollback_steps(task.type), read_conn, stop)
    work_class = _resolve(tasktypes.get(task.type).runner, task.type, "runner")
    work: Work = work_class(task, params, read_conn, stop, settings, connect=connect,
                            read_ahead=read_ahead)
    return work
