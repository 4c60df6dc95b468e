"""The webhooks' outbox: every phase change to send, until its endpoint took it.

- ``longtask.notifications``: one row per phase change of a task whose organization has a
  webhook (``operator/webhooks.py``). ``event_id`` is the transition's identity, so the same
  decision repeated after a crash writes no second row; the operator's leader sends the
  oldest unsent row of each task (the index below), records each attempt, and gives up on
  a row after its last retry (``failed_at``). Sent and failed rows are pruned after a week.
- The grants of :data:`longtask.db.roles.GRANTS` made by this revision.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from longtask.db import roles as _roles

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE longtask.notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        text NOT NULL UNIQUE,
    organization    text NOT NULL,
    task_uid        uuid NOT NULL,
    attributes      jsonb NOT NULL,
    data            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz,
    failed_at       timestamptz
);
-- The oldest unsent notification of each task: what the sender reads every pass.
CREATE INDEX notifications_pending ON longtask.notifications (task_uid, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
-- What the pruning reads.
CREATE INDEX notifications_created ON longtask.notifications (created_at);
"""

DOWNGRADE = "DROP TABLE longtask.notifications;"


def upgrade() -> None:
    op.execute(UPGRADE)
    _roles.grant_revision(op, revision)


def downgrade() -> None:
    _roles.revoke_revision(op, revision)
    op.execute(DOWNGRADE)
