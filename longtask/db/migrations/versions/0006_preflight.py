"""Preflight: the indexes its lookups use, and the API's reads of stored values.

The dry run's preflight (``api/preflight.py``) compares a request with what its
organization already has; each of its queries is an index lookup, filtered by the
organization:

- ``baseline_records_values``: a GIN index (``jsonb_path_ops``) on a baseline record's
  ``data`` under a key made of its organization and form (``{"O/F": data}``), so "does
  form F of organization O store value V in field Y" is one containment probe
  (``@> '{"O/F": {"Y": "V"}}'``) whose posting list holds that form's records only:
  another organization's records never enter it, nor cost it time. The runner's inserts
  maintain it too (GIN's pending list keeps that cheap; it is kept to 256 kB, since
  every lookup reads it whole; see README, "Benchmarks").
- ``tasks_previous_exports``: an organization's task records of one type, newest first
  (an export's size against the previous ones).
- ``field_users_name``: an organization's users by name (a teams file's name column
  against the stored users).
- The grants of :data:`longtask.db.roles.GRANTS` made by this revision: the API reads the
  stored values it compares with (columns listed there), never the rows' task ids.

Plain ``CREATE INDEX`` (in the migration's transaction): on a large existing table, run
it beforehand as ``CREATE INDEX CONCURRENTLY`` with the same name and definition, and the
``IF NOT EXISTS`` here leaves it alone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from longtask.db import roles as _roles

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
-- jsonb_set, int8 to text and || are immutable, so the key may be an index expression;
-- api/preflight.py's probe repeats this expression exactly.
CREATE INDEX IF NOT EXISTS baseline_records_values ON collect.baseline_records
    USING gin ((jsonb_set('{}'::jsonb, ARRAY[organization_id::text || '/' || form_id::text],
                          data)) jsonb_path_ops)
    -- Every lookup reads the whole pending list of entries not yet merged: kept short.
    WITH (gin_pending_list_limit = 256);
CREATE INDEX IF NOT EXISTS tasks_previous_exports ON longtask.tasks
    (organization, type, created_at DESC);
CREATE INDEX IF NOT EXISTS field_users_name ON collect.field_users (organization_id, name)
    WHERE name IS NOT NULL;
"""

DOWNGRADE = """
DROP INDEX collect.field_users_name;
DROP INDEX longtask.tasks_previous_exports;
DROP INDEX collect.baseline_records_values;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    _roles.grant_revision(op, revision)


def downgrade() -> None:
    _roles.revoke_revision(op, revision)
    op.execute(DOWNGRADE)
