"""One database role per component: the group roles and their grants.

The migration owner (who runs this) keeps the schemas and tables; the NOLOGIN group roles
of the API, the operator and the runner (``longtask_api``, ``longtask_operator``,
``longtask_runner``, or the names in ``LONGTASK_DATABASE_ROLE_*``) are made when missing and
get the privileges of migration 0003 in :data:`longtask.db.roles.GRANTS`. Login roles are
granted to them outside migrations (the chart's bootstrap, a database administrator).
Re-runnable: the roles may exist already, and GRANT and REVOKE are idempotent. The
downgrade revokes the grants and keeps the roles (other databases may use them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from longtask.db import roles as _roles

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    names = _roles.of_migration(op)
    for statement in _roles.create_roles_sql(names):
        op.execute(statement)
    # Nobody but the owner and the roles below reaches the schemas (PUBLIC has no right on
    # a new schema; this keeps it so on a server whose defaults were changed).
    op.execute("REVOKE ALL ON SCHEMA collect, longtask FROM PUBLIC")
    for statement in _roles.grant_sql(names, revision):
        op.execute(statement)


def downgrade() -> None:
    _roles.revoke_revision(op, revision)
