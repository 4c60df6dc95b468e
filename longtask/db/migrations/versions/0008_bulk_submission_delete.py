"""BulkSubmissionDelete: the runner may delete submissions and insert them back.

No table changes: a deleted submission's before-image goes to ``longtask.undo_journal``
(``after_version`` 0), and the rollback inserts it back with its own id.

``longtask.count_matching_submissions(form, from, to, where)`` counts the submissions a
task's filter matches, running as the owner (SECURITY DEFINER): the API's dry run says how
many a delete would remove through it without the API's role reading any answer. This
revision makes the grants of :data:`longtask.db.roles.GRANTS` with ``since`` 0008.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from longtask.db import roles as _roles

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


UPGRADE = r"""
CREATE FUNCTION longtask.count_matching_submissions(
        form bigint, from_at timestamptz, to_at timestamptz, answers jsonb) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT count(*) FROM collect.submissions s
    WHERE s.form_id = form AND s.submitted_at >= from_at AND s.submitted_at < to_at
      AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(answers) a
                      WHERE (s.data ->> a.key) IS DISTINCT FROM a.value)
$$;
REVOKE EXECUTE ON FUNCTION longtask.count_matching_submissions(bigint, timestamptz,
    timestamptz, jsonb) FROM PUBLIC;
"""

DOWNGRADE = """
DROP FUNCTION longtask.count_matching_submissions(bigint, timestamptz, timestamptz, jsonb);
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    _roles.grant_revision(op, revision)


def downgrade() -> None:
    _roles.revoke_revision(op, revision)
    op.execute(DOWNGRADE)
