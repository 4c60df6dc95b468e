"""Storage given back and bounded per organization: usage, retention, removal audit.

- ``longtask.storage_usage``: one row per organization, the bytes it stores (complete,
  not removed files and export parts together) and an optional quota of its own. Triggers
  keep ``used_bytes`` true for every writer (the API's uploads, the runner's export parts,
  a rollback, a cascade from a deleted task record, the retention); the quota is checked by
  :mod:`longtask.storage` under this row's lock (``SELECT ... FOR UPDATE``), so two
  uploads racing cannot both pass it.
- ``longtask.files``: ``first_used_at`` and ``last_claimed_at`` (a task was created with
  it), ``expires_at`` (when the retention removes it; NULL while a task uses it) and
  ``removed_at`` (its blocks were removed; the row stays so the API can answer 410).
- ``longtask.tasks``: ``output_bytes`` (an export's parts, by trigger), ``output_expires_at``
  and ``output_removed_at`` for its output.
- ``longtask.storage_removals``: the audit of every removal (what, organization, bytes,
  when, why).
- The grants of :data:`longtask.db.roles.GRANTS` made by this revision (the components'
  roles of migration 0003); the usage's functions run as the owner (SECURITY DEFINER).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from longtask.db import roles as _roles

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE longtask.storage_usage (
    organization text PRIMARY KEY,
    used_bytes   bigint NOT NULL DEFAULT 0 CHECK (used_bytes >= 0),
    -- This organization's own quota in bytes; NULL: the deployment's default setting.
    quota_bytes  bigint CHECK (quota_bytes >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE longtask.files
    ADD COLUMN first_used_at   timestamptz,
    ADD COLUMN last_claimed_at timestamptz,
    ADD COLUMN expires_at      timestamptz,
    ADD COLUMN removed_at      timestamptz;
CREATE INDEX files_expires ON longtask.files (expires_at)
    WHERE removed_at IS NULL AND expires_at IS NOT NULL;

ALTER TABLE longtask.tasks
    ADD COLUMN output_bytes      bigint NOT NULL DEFAULT 0,
    ADD COLUMN output_expires_at timestamptz,
    ADD COLUMN output_removed_at timestamptz;

CREATE TABLE longtask.storage_removals (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('file', 'export-output')),
    object_id    uuid NOT NULL,
    organization text NOT NULL,
    bytes        bigint NOT NULL,
    removed_at   timestamptz NOT NULL DEFAULT now(),
    reason       text NOT NULL
);
CREATE INDEX storage_removals_object ON longtask.storage_removals (object_id);
CREATE INDEX storage_removals_organization ON longtask.storage_removals
    (organization, removed_at);

-- Add delta bytes to an organization's usage (never below zero).
CREATE FUNCTION longtask.storage_charge(org text, delta bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO longtask.storage_usage AS u (organization, used_bytes)
    VALUES (org, GREATEST(delta, 0))
    ON CONFLICT (organization) DO UPDATE
        SET used_bytes = GREATEST(u.used_bytes + delta, 0), updated_at = now();
$$;

-- A file counts while it is complete and not removed.
CREATE FUNCTION longtask.files_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    before bigint := 0;
    after  bigint := 0;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.complete AND OLD.removed_at IS NULL THEN
        before := OLD.size_bytes;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.complete AND NEW.removed_at IS NULL THEN
        after := NEW.size_bytes;
    END IF;
    IF after <> before THEN
        PERFORM longtask.storage_charge(
            CASE WHEN TG_OP = 'DELETE' THEN OLD.organization ELSE NEW.organization END,
            after - before);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER files_usage AFTER INSERT OR UPDATE OR DELETE ON longtask.files
    FOR EACH ROW EXECUTE FUNCTION longtask.files_usage();

-- An export part counts on its task record (output_bytes) and its organization. In a
-- cascade from a deleted task record the record is gone: its own trigger gave it back.
CREATE FUNCTION longtask.export_parts_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta bigint;
    part_task uuid;
    org   text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        delta := octet_length(NEW.data);
        part_task := NEW.task_uid;
    ELSE
        delta := -octet_length(OLD.data);
        part_task := OLD.task_uid;
    END IF;
    UPDATE longtask.tasks SET output_bytes = GREATEST(output_bytes + delta, 0)
        WHERE uid = part_task RETURNING organization INTO org;
    IF org IS NOT NULL THEN
        PERFORM longtask.storage_charge(org, delta);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER export_parts_usage AFTER INSERT OR DELETE ON longtask.export_parts
    FOR EACH ROW EXECUTE FUNCTION longtask.export_parts_usage();

CREATE FUNCTION longtask.tasks_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.output_bytes > 0 THEN
        PERFORM longtask.storage_charge(OLD.organization, -OLD.output_bytes);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_usage AFTER DELETE ON longtask.tasks
    FOR EACH ROW EXECUTE FUNCTION longtask.tasks_usage();

-- The usage is written by these functions alone, as the migration owner: a component's
-- role fires them (its writes to files, export_parts, tasks) but may not call
-- storage_charge itself nor write longtask.storage_usage's bytes (longtask/db/roles.py).
ALTER FUNCTION longtask.storage_charge(text, bigint) SECURITY DEFINER SET search_path = pg_catalog;
ALTER FUNCTION longtask.files_usage() SECURITY DEFINER SET search_path = pg_catalog;
ALTER FUNCTION longtask.export_parts_usage() SECURITY DEFINER SET search_path = pg_catalog;
ALTER FUNCTION longtask.tasks_usage() SECURITY DEFINER SET search_path = pg_catalog;
REVOKE EXECUTE ON FUNCTION longtask.storage_charge(text, bigint) FROM PUBLIC;

-- What is stored already.
UPDATE longtask.tasks t SET output_bytes = p.bytes
    FROM (SELECT task_uid, sum(octet_length(data)) AS bytes FROM longtask.export_parts
          GROUP BY task_uid) p
    WHERE p.task_uid = t.uid;
INSERT INTO longtask.storage_usage (organization, used_bytes)
    SELECT organization, sum(bytes) FROM (
        SELECT organization, size_bytes AS bytes FROM longtask.files WHERE complete
        UNION ALL
        SELECT organization, output_bytes FROM longtask.tasks) s
    GROUP BY organization;
"""

DOWNGRADE = """
DROP TRIGGER tasks_usage ON longtask.tasks;
DROP TRIGGER export_parts_usage ON longtask.export_parts;
DROP TRIGGER files_usage ON longtask.files;
DROP FUNCTION longtask.tasks_usage();
DROP FUNCTION longtask.export_parts_usage();
DROP FUNCTION longtask.files_usage();
DROP FUNCTION longtask.storage_charge(text, bigint);
DROP TABLE longtask.storage_removals;
ALTER TABLE longtask.tasks DROP COLUMN output_bytes, DROP COLUMN output_expires_at,
    DROP COLUMN output_removed_at;
DROP INDEX longtask.files_expires;
ALTER TABLE longtask.files DROP COLUMN first_used_at, DROP COLUMN last_claimed_at,
    DROP COLUMN expires_at, DROP COLUMN removed_at;
DROP TABLE longtask.storage_usage;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    _roles.grant_revision(op, revision)


def downgrade() -> None:
    _roles.revoke_revision(op, revision)
    op.execute(DOWNGRADE)
