"""The file store against a real server: what goes in comes out, from any offset, and the
blocks are stored with lz4 (migration 0002), which migrations can take back."""

from __future__ import annotations

import hashlib
import io

import pytest

from longtask import filestore
from longtask.db.migrate import downgrade, upgrade

DATA = b"id,name\n" + b"".join(b"%d,caf\xc3\xa9 %d\n" % (i, i) for i in range(5000))
BLOCK = 4096


@pytest.fixture
def stored(db):  # type: ignore[no-untyped-def]
    return filestore.store(db, io.BytesIO(DATA), organization="acme", filename="f.csv",
                           block_size=BLOCK)


def test_bytes_come_back_whole_with_their_digest(db, stored) -> None:  # type: ignore[no-untyped-def]
    blocks = list(filestore.read_blocks(db, stored))
    assert b"".join(blocks) == DATA
    assert max(map(len, blocks)) == BLOCK
    assert (stored.size_bytes, stored.sha256) == (len(DATA), hashlib.sha256(DATA).hexdigest())


@pytest.mark.parametrize("start", [0, 1, BLOCK - 1, BLOCK, BLOCK + 7, 3 * BLOCK,
                                   len(DATA) - 1, len(DATA), len(DATA) + 10])
def test_reading_resumes_at_any_offset(db, stored, start: int) -> None:  # type: ignore[no-untyped-def]
    assert b"".join(filestore.read_blocks(db, stored, start)) == DATA[start:]


def compressions(db) -> set[str | None]:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute("SELECT DISTINCT pg_column_compression(data) FROM longtask.file_blocks")
        return {row[0] for row in cur.fetchall()}


def test_blocks_are_compressed_with_lz4_until_the_migration_is_taken_back(db, db_url) -> None:  # type: ignore[no-untyped-def]
    filestore.store(db, io.BytesIO(DATA), organization="acme", filename="a.csv")
    assert compressions(db) == {"lz4"}
    downgrade(db_url, "0001")
    filestore.store(db, io.BytesIO(DATA), organization="acme", filename="b.csv")
    assert compressions(db) == {"lz4", "pglz"}
    upgrade(db_url)
    with db.cursor() as cur:
        cur.execute("TRUNCATE longtask.files CASCADE")
    filestore.store(db, io.BytesIO(DATA), organization="acme", filename="c.csv")
    assert compressions(db) == {"lz4"}
