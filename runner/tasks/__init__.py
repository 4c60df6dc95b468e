"""The task types' run and rollback work, looked up by type name and mode."""

from __future__ import annotations

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

ROLLBACK_STEPS: dict[str, tuple[Step, ...]] = {
    "BaselineUpload": (
        RestoreJournal("baseline_records", ("data", "task_uid", "updated_at")),
        DeleteInserted("baseline_records"),
    ),
    "Export": (DeleteOwned("export_parts", "part"),),
    # Memberships first (those of a team that stays stay with it), then the teams and
    # users they pointed at.
    "BulkTeamCreate": (
        DeleteInserted("team_memberships", kept_with=(("team_id", "teams"),)),
        DeleteInserted("teams", referenced_by=(("team_memberships", "team_id"),)),
        DeleteInserted("field_users", referenced_by=(("team_memberships", "user_id"),)),
    ),
    "BulkSubmissionDelete": (
        RestoreDeleted("submissions", ("id", "organization_id", "form_id", "submitted_at",
                                       "submitted_by", "data")),
    ),
}


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

    Raises :class:`TaskFailed` when the type is unknown or its params do not fit its schema.
    """
    try:
        params = tasktypes.parse_params(task.type, task.params)
    except (tasktypes.UnknownTaskType, tasktypes.ParamsError) as exc:
        raise TaskFailed(str(exc)) from None
    if mode == "rollback":
        return Rollback(task.uid, ROLLBACK_STEPS[task.type], read_conn, stop)
    if isinstance(params, tasktypes.BaselineUploadParams):
        from longtask.runner.tasks.baseline import BaselineUpload

        return BaselineUpload(task, params, read_conn, stop, settings, connect=connect,
                              read_ahead=read_ahead)
    if isinstance(params, tasktypes.ExportParams):
        from longtask.runner.tasks.export import Export

        return Export(task, params, read_conn, stop, settings, connect=connect,
                      read_ahead=read_ahead)
    if isinstance(params, tasktypes.BulkTeamCreateParams):
        from longtask.runner.tasks.teams import BulkTeamCreate

        return BulkTeamCreate(task, params, read_conn, stop, settings, connect=connect,
                              read_ahead=read_ahead)
    if isinstance(params, tasktypes.BulkSubmissionDeleteParams):
        from longtask.runner.tasks.deletes import BulkSubmissionDelete

        return BulkSubmissionDelete(task, params, read_conn, stop, settings, connect=connect,
                                    read_ahead=read_ahead)
    raise TaskFailed(f"task type {task.type!r} has no runner")
