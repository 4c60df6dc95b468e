"""The live throttle on the runner's side: a rate limit written into the task record while
the runner runs (as the operator writes it, with its own database role) is kept from the
next chunk, without a burst to catch up or a stall to pay back the old pace."""

from __future__ import annotations

import time
import uuid

import psycopg2.extensions
import psycopg2.extras
import pytest
import runner_support as s

from longtask import constants, taskrecord

PEOPLE = [("name", "text", True), ("age", "integer", False)]


@pytest.fixture
def people(db):  # type: ignore[no-untyped-def]
    org = s.create_org(db)
    s.create_form(db, org, "people", PEOPLE)
    return org


def done_of(db: psycopg2.extensions.connection, uid: uuid.UUID) -> int:
    with db.cursor() as cur:
        cur.execute("SELECT done FROM longtask.tasks WHERE uid = %s", (uid,))
        row = cur.fetchone()
    return int(row[0]) if row else 0


def wait_for_done(db: psycopg2.extensions.connection, uid: uuid.UUID, rows: int,
                  seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while done_of(db, uid) < rows:
        assert time.monotonic() < deadline, f"fewer than {rows} rows after {seconds} s"
        time.sleep(0.05)


def rate_over(db: psycopg2.extensions.connection, uid: uuid.UUID, seconds: float) -> float:
    """Rows committed per second over the next ``seconds``."""
    first, start = done_of(db, uid), time.monotonic()
    time.sleep(seconds)
    return (done_of(db, uid) - first) / (time.monotonic() - start)


def set_limit(operator_db_url: str, uid: uuid.UUID, limit: float | None) -> None:
    conn = s.connect(operator_db_url)
    try:
        assert taskrecord.set_rate_limit(conn, uid, limit)
    finally:
        conn.close()


@pytest.mark.timeout(90)
def test_a_rate_limit_changed_mid_run_is_kept_from_the_next_chunk(
        runner_db_url, operator_db_url, db, db_url, people, tmp_path):
    file_id = s.store_bytes(db_url, ("id,name,age\n" + "".join(
        f"R{i},Throttled {i},{i % 90}\n" for i in range(3000))).encode())
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"},
                  rate_limit=20)
    run = s.spawn(runner_db_url, task, log=tmp_path / "run.log")
    try:
        wait_for_done(db, task.uid, 10, 30)
        slow = rate_over(db, task.uid, 2.0)

        set_limit(operator_db_url, task.uid, 200)
        time.sleep(0.5)  # the chunk in flight, then the new pace
        fast = rate_over(db, task.uid, 2.0)

        set_limit(operator_db_url, task.uid, 10)
        time.sleep(0.5)
        slower = rate_over(db, task.uid, 2.0)

        set_limit(operator_db_url, task.uid, None)
        wait_for_done(db, task.uid, 3000, 30)
        assert run.wait(timeout=30) == constants.EXIT_DONE
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    # Held within a factor of the limit: a burst to catch up with the old pace would show
    # far above 200, a stall paying back the faster one far below 10.
    assert 12 <= slow <= 28, f"at 20 rows/s: {slow:.1f}"
    assert 120 <= fast <= 240, f"raised to 200 rows/s: {fast:.1f}"
    assert 5 <= slower <= 15, f"lowered to 10 rows/s: {slower:.1f}"
    assert s.record(db, task.uid)["rate_limit"] is None


def test_a_runner_started_again_keeps_the_records_limit_not_its_jobs(
        runner_db_url, operator_db_url, db, db_url, people):
    """The Job's environment keeps the limit it was made with; once a runner took the lease,
    the record's (the operator's, from spec.rateLimit) is the one in force, removed too."""
    file_id = s.store_bytes(db_url, b"id,name\nA1,Asha\nA2,Ravi\n")
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"},
                  rate_limit=50)
    conn = s.connect(runner_db_url)
    try:
        taskrecord.register(conn, taskrecord.TaskRecord(
            uid=task.uid, type=task.type, organization=task.organization,
            params=task.params, name=task.name, namespace=task.namespace, rate_limit=50))
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            assert taskrecord.acquire(cur, task.uid, "run", "first-runner") is not None
        conn.commit()
    finally:
        conn.close()
    set_limit(operator_db_url, task.uid, None)  # the limit removed while it ran

    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE

    assert s.record(db, task.uid)["rate_limit"] is None
