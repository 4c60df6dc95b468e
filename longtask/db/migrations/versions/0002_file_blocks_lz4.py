"""Stored file blocks compressed with lz4.

Every run reads its file twice (the progress count, then the rows) and the default pglz
decompresses a 1 MiB block several times slower than lz4. New blocks use lz4; blocks
already stored keep their compression. Servers built without lz4 keep the default.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
DO $$
BEGIN
    ALTER TABLE longtask.file_blocks ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available; file blocks use the default compression';
END $$;
""")


def downgrade() -> None:
    op.execute("ALTER TABLE longtask.file_blocks ALTER COLUMN data SET COMPRESSION default")
