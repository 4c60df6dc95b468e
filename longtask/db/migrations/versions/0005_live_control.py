"""Live control: the operator writes the task record's rate limit.

``spec.rateLimit`` may change while a task runs; the operator writes the new value into
``longtask.tasks.rate_limit``, which the runner reads under its chunk lock before every
chunk (:func:`longtask.taskrecord.set_rate_limit`). No table or column changes: this
revision applies the grants of :data:`longtask.db.roles.GRANTS` made by it (the
operator's ``UPDATE (rate_limit)`` on ``longtask.tasks``) and revokes them on downgrade.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from longtask.db import roles as _roles

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _roles.grant_revision(op, revision)


def downgrade() -> None:
    _roles.revoke_revision(op, revision)
