"""Initial schema: the Collect reference model and the engine's tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE SCHEMA collect;
CREATE SCHEMA longtask;

-- Every row a task may write carries the task that inserted it (task_uid) and a
-- row_version bumped on each UPDATE. Rollback deletes an inserted row only while its
-- version is still 1, and restores a before-image only while the version is the one the
-- task left: a row someone else changed since is left alone and reported.
CREATE FUNCTION collect.bump_row_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.row_version := OLD.row_version + 1;
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END $$;

CREATE TABLE collect.organizations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE collect.forms (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES collect.organizations,
    name            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name)
);

CREATE TABLE collect.form_fields (
    form_id   bigint NOT NULL REFERENCES collect.forms ON DELETE CASCADE,
    position  int NOT NULL,
    name      text NOT NULL,
    type      text NOT NULL CHECK (type IN ('text', 'integer', 'decimal', 'boolean', 'date',
                  'datetime', 'phone', 'select_one', 'select_multiple', 'geopoint')),
    required  boolean NOT NULL DEFAULT false,
    options   jsonb,
    PRIMARY KEY (form_id, name),
    UNIQUE (form_id, position)
);

CREATE TABLE collect.baseline_records (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES collect.organizations,
    form_id         bigint NOT NULL REFERENCES collect.forms,
    external_id     text NOT NULL,
    data            jsonb NOT NULL,
    task_uid        uuid,
    row_version     bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (organization_id, form_id, external_id)
);
CREATE INDEX baseline_records_task ON collect.baseline_records (task_uid, id)
    WHERE task_uid IS NOT NULL;
CREATE TRIGGER baseline_records_version BEFORE UPDATE ON collect.baseline_records
    FOR EACH ROW EXECUTE FUNCTION collect.bump_row_version();

CREATE TABLE collect.submissions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES collect.organizations,
    form_id         bigint NOT NULL REFERENCES collect.forms,
    submitted_at    timestamptz NOT NULL,
    submitted_by    text,
    data            jsonb NOT NULL
);
CREATE INDEX submissions_form_time ON collect.submissions (form_id, submitted_at, id);

CREATE TABLE collect.field_users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES collect.organizations,
    phone_e164      text NOT NULL CHECK (phone_e164 ~ '^\+[1-9][0-9]{6,14}$'),
    name            text,
    task_uid        uuid,
    row_version     bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (organization_id, phone_e164)
);
CREATE INDEX field_users_task ON collect.field_users (task_uid, id) WHERE task_uid IS NOT NULL;
CREATE TRIGGER field_users_version BEFORE UPDATE ON collect.field_users
    FOR EACH ROW EXECUTE FUNCTION collect.bump_row_version();

CREATE TABLE collect.teams (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES collect.organizations,
    name            text NOT NULL,
    task_uid        uuid,
    row_version     bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (organization_id, name)
);
CREATE INDEX teams_task ON collect.teams (task_uid, id) WHERE task_uid IS NOT NULL;
CREATE TRIGGER teams_version BEFORE UPDATE ON collect.teams
    FOR EACH ROW EXECUTE FUNCTION collect.bump_row_version();

CREATE TABLE collect.team_memberships (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id     bigint NOT NULL REFERENCES collect.teams ON DELETE RESTRICT,
    user_id     bigint NOT NULL REFERENCES collect.field_users ON DELETE RESTRICT,
    role        text NOT NULL CHECK (role IN ('manager', 'member')),
    task_uid    uuid,
    row_version bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (team_id, user_id)
);
CREATE UNIQUE INDEX team_memberships_one_manager ON collect.team_memberships (team_id)
    WHERE role = 'manager';
CREATE INDEX team_memberships_user ON collect.team_memberships (user_id);
CREATE INDEX team_memberships_task ON collect.team_memberships (task_uid, id)
    WHERE task_uid IS NOT NULL;
CREATE TRIGGER team_memberships_version BEFORE UPDATE ON collect.team_memberships
    FOR EACH ROW EXECUTE FUNCTION collect.bump_row_version();

-- The file store: uploads kept in fixed-size blocks so they stream in and out.
CREATE TABLE longtask.files (
    id           uuid PRIMARY KEY,
    organization text NOT NULL,
    filename     text NOT NULL,
    content_type text,
    block_size   int NOT NULL,
    size_bytes   bigint NOT NULL DEFAULT 0,
    sha256       text,
    encoding     text,
    source_encoding text,
    complete     boolean NOT NULL DEFAULT false,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE longtask.file_blocks (
    file_id uuid NOT NULL REFERENCES longtask.files ON DELETE CASCADE,
    seq     int NOT NULL,
    data    bytea NOT NULL,
    PRIMARY KEY (file_id, seq)
);

-- One row per task: the run's checkpoint and progress, the rollback's, and the fencing
-- epoch that every runner bumps when it starts (the newest runner is the lease holder).
CREATE TABLE longtask.tasks (
    uid                  uuid PRIMARY KEY,
    name                 text,
    namespace            text,
    type                 text NOT NULL,
    organization         text NOT NULL,
    params               jsonb NOT NULL,
    epoch                bigint NOT NULL DEFAULT 0,
    lease_holder         text,
    rate_limit           double precision CHECK (rate_limit > 0),
    -- Set by the control plane (API, operator) the moment a pause or terminate is asked
    -- for: while set, a run takes no lease and commits no chunk, whatever the Job does.
    hold                 text CHECK (hold IN ('Paused', 'Terminated')),
    run_status           text NOT NULL DEFAULT 'pending'
        CHECK (run_status IN ('pending', 'running', 'stopped', 'succeeded', 'failed')),
    cursor               jsonb,
    total                bigint,
    done                 bigint NOT NULL DEFAULT 0,
    row_errors           bigint NOT NULL DEFAULT 0,
    chunks               bigint NOT NULL DEFAULT 0,
    rate_per_second      double precision,
    eta_seconds          double precision,
    message              text,
    stop_reason          text,
    stop_requested_at    timestamptz,
    started_at           timestamptz,
    heartbeat_at         timestamptz,
    finished_at          timestamptz,
    rollback_status      text NOT NULL DEFAULT 'none'
        CHECK (rollback_status IN ('none', 'running', 'stopped', 'succeeded', 'failed')),
    rollback_cursor      jsonb,
    rollback_total       bigint,
    rollback_done        bigint NOT NULL DEFAULT 0,
    rollback_conflicts   bigint NOT NULL DEFAULT 0,
    rollback_message     text,
    rollback_started_at  timestamptz,
    rollback_finished_at timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- The chunk log: one row per committed chunk, written in the chunk's own transaction.
CREATE TABLE longtask.chunks (
    task_uid            uuid NOT NULL REFERENCES longtask.tasks ON DELETE CASCADE,
    mode                text NOT NULL CHECK (mode IN ('run', 'rollback')),
    seq                 bigint NOT NULL,
    epoch               bigint NOT NULL,
    rows                int NOT NULL,
    row_errors          int NOT NULL,
    started_at          timestamptz NOT NULL,
    commit_requested_at timestamptz NOT NULL,
    PRIMARY KEY (task_uid, mode, seq)
);

CREATE TABLE longtask.row_errors (
    task_uid    uuid NOT NULL REFERENCES longtask.tasks ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    line        bigint NOT NULL,
    column_name text,
    reason      text NOT NULL,
    value       text,
    PRIMARY KEY (task_uid, id)
);
CREATE INDEX row_errors_line ON longtask.row_errors (task_uid, line);

-- Before-images of rows a task updated or deleted, written in the same transaction as
-- the change; rollback replays them newest first.
CREATE TABLE longtask.undo_journal (
    task_uid      uuid NOT NULL REFERENCES longtask.tasks ON DELETE CASCADE,
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    table_name    text NOT NULL,
    row_id        bigint NOT NULL,
    before_image  jsonb NOT NULL,
    after_version bigint NOT NULL,
    PRIMARY KEY (task_uid, seq)
);
CREATE INDEX undo_journal_row ON longtask.undo_journal (task_uid, table_name, row_id);

-- Rows a rollback left alone because someone else changed or referenced them.
CREATE TABLE longtask.rollback_conflicts (
    task_uid   uuid NOT NULL REFERENCES longtask.tasks ON DELETE CASCADE,
    table_name text NOT NULL,
    row_id     bigint NOT NULL,
    reason     text NOT NULL,
    PRIMARY KEY (task_uid, table_name, row_id)
);

-- Export output, one part per chunk, committed with the chunk's cursor. The CSV is kept as
-- text (UTF-8, like the database): sent as is, where bytea would travel hex-encoded.
CREATE TABLE longtask.export_parts (
    task_uid uuid NOT NULL REFERENCES longtask.tasks ON DELETE CASCADE,
    part     bigint NOT NULL,
    rows     int NOT NULL,
    data     text NOT NULL,
    sha256   text NOT NULL,
    PRIMARY KEY (task_uid, part)
);
-- lz4 compresses a part several times faster than the default pglz; servers built
-- without lz4 keep the default.
DO $$
BEGIN
    ALTER TABLE longtask.export_parts ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available; export parts use the default compression';
END $$;
"""

DOWNGRADE = """
DROP SCHEMA longtask CASCADE;
DROP SCHEMA collect CASCADE;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
