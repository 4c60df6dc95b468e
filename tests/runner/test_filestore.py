"""The file store against a real server: what goes in comes out, from any offset, and the
blocks are stored with lz4 (migration 0002), which migrations can take back."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions
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


# ---------------------------------------------------------------- stored a block at a time


class _Lender:
    """Lends ``db_url``'s connections one statement at a time, and says whether one is out
    (autocommit, as the API's pool lends them)."""

    def __init__(self, db_url: str) -> None:
        self.conn = psycopg2.connect(db_url)
        self.conn.autocommit = True
        self.out = False
        self.lent = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[psycopg2.extensions.connection]:
        self.out, self.lent = True, self.lent + 1
        try:
            yield self.conn
        finally:
            self.out = False


class _Watched(io.RawIOBase):
    """``DATA`` read through a check that no connection is lent while the stream is read;
    fails with OSError after ``fail_after`` bytes when given."""

    def __init__(self, lender: _Lender, fail_after: int | None = None) -> None:
        self._data = io.BytesIO(DATA)
        self._lender = lender
        self._fail_after = fail_after
        self.reads_while_lent = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        self.reads_while_lent += self._lender.out
        if self._fail_after is not None and self._data.tell() >= self._fail_after:
            raise OSError("the client went away")
        return self._data.readinto(buffer)


def test_a_file_stored_in_blocks_holds_no_connection_while_it_reads(db, db_url) -> None:  # type: ignore[no-untyped-def]
    lender = _Lender(db_url)
    stream = _Watched(lender)

    info = filestore.store_in_blocks(lender, io.BufferedReader(stream, 1024),
                                     organization="acme", filename="f.csv", block_size=BLOCK)

    assert stream.reads_while_lent == 0
    assert lender.lent > len(DATA) // BLOCK, "a statement per block"
    assert b"".join(filestore.read_blocks(db, filestore.info(db, info.id))) == DATA
    lender.conn.close()


def test_a_file_cut_off_in_blocks_leaves_nothing_behind(db, db_url) -> None:  # type: ignore[no-untyped-def]
    lender = _Lender(db_url)

    with pytest.raises(OSError, match="went away"):
        filestore.store_in_blocks(lender, io.BufferedReader(_Watched(lender, 5 * BLOCK), 1024),
                                  organization="acme", filename="f.csv", block_size=BLOCK)

    with db.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM longtask.files), "
                    "(SELECT count(*) FROM longtask.file_blocks)")
        assert cur.fetchone() == (0, 0)
    lender.conn.close()
