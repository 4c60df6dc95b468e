"""The storage protocol against a real PostgreSQL server: usage kept for every writer, the
quota's row lock between racing writers, an export stopped at its organization's quota."""

from __future__ import annotations

import datetime as dt
import io
import threading
import time
import uuid

import psycopg2.extensions
import pytest
import runner_support as s
from longtask.runner.tasks.export import read_output

from devcluster import seed
from longtask import constants, filestore, storage
from longtask.db import connect
from longtask.settings import RunnerSettings

UTC = dt.UTC
WAIT = 10.0  # seconds: the bound of every wait here
SMALL_CHUNKS = RunnerSettings(chunk_initial_rows=300, chunk_min_rows=300, chunk_max_rows=300)


def used(db: psycopg2.extensions.connection, org: str = "acme") -> int:
    with db.cursor() as cur:
        cur.execute("SELECT used_bytes FROM longtask.storage_usage WHERE organization = %s",
                    (org,))
        row = cur.fetchone()
    return int(row[0]) if row else 0


def output_bytes(db: psycopg2.extensions.connection, uid: uuid.UUID) -> int:
    with db.cursor() as cur:
        cur.execute("SELECT coalesce(sum(octet_length(data)), 0) FROM longtask.export_parts "
                    "WHERE task_uid = %s", (uid,))
        return int(cur.fetchone()[0])  # type: ignore[index]


@pytest.fixture
def survey(db):  # type: ignore[no-untyped-def]
    org = s.create_org(db)
    form = seed.submission_form(db, org)
    seed.submissions(db, org, form, 3000, dt.datetime(2015, 1, 1, tzinfo=UTC),
                     dt.datetime(2019, 1, 1, tzinfo=UTC))
    return org, form


def export() -> s.TaskDefinition:
    return s.task("Export", {"form": "household-survey", "from": "2015-01-01",
                             "to": "2018-12-31"})


def test_usage_follows_uploads_exports_rollbacks_and_deleted_records(db, db_url, survey):  # type: ignore[no-untyped-def]
    stored = filestore.store(db, io.BytesIO(b"a,b\n1,2\n"), organization="acme",
                             filename="f.csv")
    assert used(db) == stored.size_bytes
    task = export()
    assert s.run_inline(db_url, task, settings=SMALL_CHUNKS) == constants.EXIT_DONE
    assert used(db) == stored.size_bytes + output_bytes(db, task.uid) > stored.size_bytes

    assert s.run_inline(db_url, task, "rollback", settings=SMALL_CHUNKS) == constants.EXIT_DONE
    assert used(db) == stored.size_bytes, "the rollback gave the output's bytes back"

    again = export()
    assert s.run_inline(db_url, again, settings=SMALL_CHUNKS) == constants.EXIT_DONE
    with db.cursor() as cur:
        cur.execute("DELETE FROM longtask.tasks WHERE uid = %s", (again.uid,))
        cur.execute("DELETE FROM longtask.files WHERE id = %s", (stored.id,))
    assert used(db) == 0, "a deleted record's parts (cascade) and file are given back"


def test_an_export_past_its_organizations_quota_fails_saying_so(db, db_url, survey):  # type: ignore[no-untyped-def]
    reference = export()
    assert s.run_inline(db_url, reference, settings=SMALL_CHUNKS) == constants.EXIT_DONE
    whole = output_bytes(db, reference.uid)
    with db.cursor() as cur:
        cur.execute("DELETE FROM longtask.tasks WHERE uid = %s", (reference.uid,))
    quota = whole // 2
    settings = SMALL_CHUNKS.model_copy(update={"storage_quota_bytes": quota})

    task = export()
    assert s.run_inline(db_url, task, settings=settings) == constants.EXIT_FAILED

    record = s.record(db, task.uid)
    assert record["run_status"] == "failed"
    assert "past the quota" in record["message"] and str(quota) in record["message"], (
        record["message"])
    assert 0 < used(db) <= quota, "the parts before the quota stay, the refused one does not"
    assert len(read_output(db, task.uid)) == used(db)


def test_a_second_writer_waits_for_the_first_and_then_sees_its_bytes(db, db_url):  # type: ignore[no-untyped-def]
    """The quota's check locks the organization's usage row to the writer's commit: a
    racing upload waits on the lock, then counts the first one's bytes."""
    quota = 4000
    storage.set_quota(db, "acme", None)  # the row exists, as after a first upload
    first = connect(db_url, application_name="longtask-test-first")
    try:
        with first.cursor() as cur:
            storage.check(cur, "acme", 2500, quota)  # the lock, and nothing written yet
        outcome: list[BaseException | filestore.FileInfo] = []

        def second() -> None:
            conn = connect(db_url, application_name="longtask-test-second")
            try:
                outcome.append(filestore.store(conn, io.BytesIO(b"x,y\n" * 625),
                                               organization="acme", filename="b.csv",
                                               quota_bytes=quota))
            except storage.QuotaExceeded as exc:
                outcome.append(exc)
            finally:
                conn.close()

        racer = threading.Thread(target=second)
        racer.start()
        deadline = time.monotonic() + WAIT
        while not waiting_on_a_lock(db, "longtask-test-second"):
            assert racer.is_alive(), f"the second upload did not wait: {outcome}"
            assert time.monotonic() < deadline, "the second upload never waited on the lock"
            time.sleep(0.05)
        with first.cursor() as cur:
            cur.execute("INSERT INTO longtask.files (id, organization, filename, block_size, "
                        "size_bytes, complete) VALUES (%s, 'acme', 'a.csv', 1, 2500, true)",
                        (uuid.uuid4(),))
        first.commit()
        racer.join(WAIT)
    finally:
        first.close()

    [result] = outcome
    assert isinstance(result, storage.QuotaExceeded), result
    assert (result.used, result.quota, result.adding) == (2500, quota, 2500)
    assert used(db) == 2500


def waiting_on_a_lock(db: psycopg2.extensions.connection, application: str) -> bool:
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                    "AND wait_event_type = 'Lock'", (application,))
        return bool(cur.fetchone()[0])  # type: ignore[index]
