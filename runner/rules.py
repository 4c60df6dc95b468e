"""The runner's row rules as the API's dry run and upload description use them.

The one module of the runner another component imports (``tests/test_layout.py`` checks
it): the API checks a request exactly as a run would, by building the task type's
:class:`~longtask.runner.engine.Work` and opening it (organization, form, file, header)
without a lease and without a write, and by reading sample rows with the same parsers.
Everything here is re-exported from the runner's own modules; nothing new is defined.
"""

from __future__ import annotations

from longtask.runner.engine import RowError, StopToken, TaskDefinition, Work
from longtask.runner.tasks import build_work
from longtask.runner.tasks.baseline import BaselineUpload
from longtask.runner.tasks.common import (
    Connector,
    Form,
    column_of,
    header_index,
    load_form,
    open_csv,
    organization_id,
)
from longtask.runner.tasks.deletes import BulkSubmissionDelete
from longtask.runner.tasks.export import Export
from longtask.runner.tasks.teams import BulkTeamCreate, member_phones_ref

__all__ = [
    "BaselineUpload",
    "BulkSubmissionDelete",
    "BulkTeamCreate",
    "Connector",
    "Export",
    "Form",
    "RowError",
    "StopToken",
    "TaskDefinition",
    "Work",
    "build_work",
    "column_of",
    "header_index",
    "load_form",
    "member_phones_ref",
    "open_csv",
    "organization_id",
]
