"""BulkSubmissionDelete against plain SQL doing the same, as ratios in one run.

    python bench/delete_bench.py [--rows 1000000] [--chunk 10000]

Starts a throwaway PostgreSQL cluster (or uses ``$LONGTASK_BENCH_DATABASE_URL``), loads
``--rows`` submissions of one form, and prints:

1. The task deleting all of them (unthrottled, its chunks sized by the engine) against a
   plain chunked ``DELETE`` of the same rows: ``--chunk`` rows a transaction in
   ``(submitted_at, id)`` order, no journal, no checkpoint (the least a resumable delete
   must do). The ratio is plain / task: 1.0 would mean the journal, the checkpoints and
   the task record cost nothing.
2. The rollback restoring them against ``INSERT ... SELECT`` of the same rows from a copy,
   in the same chunks (the least a restore must do): plain / rollback.
3. The undo journal's size per deleted row: bytes of its before-images, and of the table
   with its indexes.

Each measurement starts from the same rows (the table is reloaded from a copy). Machines
here are noisy: compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import uuid

from longtask.runner.cli import execute
from longtask.runner.engine import StopToken, TaskDefinition

from devcluster import postgres, seed
from longtask import constants
from longtask.db import connect

UTC = dt.UTC
PARAMS = {"form": "household-survey", "from": "2015-01-01", "to": "2018-12-31"}
COLUMNS = "id, organization_id, form_id, submitted_at, submitted_by, data"


def reload(cur, form: int) -> None:  # type: ignore[no-untyped-def]
    """The form's submissions as they were: deleted and copied back from the saved copy."""
    cur.execute("DELETE FROM collect.submissions WHERE form_id = %s", (form,))
    cur.execute(f"INSERT INTO collect.submissions ({COLUMNS}) OVERRIDING SYSTEM VALUE "
                f"SELECT {COLUMNS} FROM bench_saved")
    cur.execute("VACUUM ANALYZE collect.submissions")


def plain_delete(conn, form: int, chunk: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds to delete every row of the form, ``chunk`` a transaction, in key order."""
    conn.autocommit = False
    started = time.perf_counter()
    after: tuple[object, int] | None = None
    with conn.cursor() as cur:
        while True:
            cur.execute(
                "WITH doomed AS (SELECT id, submitted_at FROM collect.submissions "
                "WHERE form_id = %s AND (%s::timestamptz IS NULL OR (submitted_at, id) > "
                "(%s::timestamptz, %s)) ORDER BY submitted_at, id LIMIT %s), "
                "gone AS (DELETE FROM collect.submissions s USING doomed d WHERE s.id = d.id "
                "RETURNING s.submitted_at, s.id) "
                "SELECT submitted_at, id FROM gone ORDER BY submitted_at DESC, id DESC LIMIT 1",
                (form, after and after[0], after and after[0], after and after[1], chunk))
            last = cur.fetchone()
            conn.commit()
            if last is None:
                break
            after = (last[0], int(last[1]))
    conn.autocommit = True
    return time.perf_counter() - started


def plain_restore(conn, chunk: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds to insert every saved row back, ``chunk`` a transaction, by id."""
    conn.autocommit = False
    started = time.perf_counter()
    after = 0
    with conn.cursor() as cur:
        while True:
            cur.execute(f"INSERT INTO collect.submissions ({COLUMNS}) OVERRIDING SYSTEM VALUE "
                        f"SELECT {COLUMNS} FROM bench_saved WHERE id > %s ORDER BY id LIMIT %s "
                        "RETURNING id", (after, chunk))
            ids = [r[0] for r in cur.fetchall()]
            conn.commit()
            if not ids:
                break
            after = max(ids)
    conn.autocommit = True
    return time.perf_counter() - started


def run(url: str, task: TaskDefinition, mode: str) -> float:
    started = time.perf_counter()
    code = execute(task, mode, url, StopToken())  # type: ignore[arg-type]
    if code != constants.EXIT_DONE:
        raise SystemExit(f"BulkSubmissionDelete {mode} ended with exit code {code}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=10_000,
                        help="rows a transaction of the plain DELETE and INSERT")
    args = parser.parse_args()
    with postgres.migrated() as url:
        conn = connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("INSERT INTO collect.organizations (slug, name) VALUES ('acme', 'Acme') "
                        "RETURNING id")
            org = cur.fetchone()[0]  # type: ignore[index]
            form = seed.submission_form(conn, org)
            seed.submissions(conn, org, form, args.rows, dt.datetime(2015, 1, 1, tzinfo=UTC),
                             dt.datetime(2019, 1, 1, tzinfo=UTC))
            cur.execute(f"CREATE TABLE bench_saved AS SELECT {COLUMNS} FROM collect.submissions")
            cur.execute("VACUUM ANALYZE collect.submissions")

            plain = plain_delete(conn, form, args.chunk)
            restore_plain = plain_restore(conn, args.chunk)
            reload(cur, form)
            task = TaskDefinition(uid=uuid.uuid4(), type="BulkSubmissionDelete",
                                  organization="acme", params=PARAMS, name="bench",
                                  namespace="bench", rate_limit=None)
            deleted = run(url, task, "run")
            cur.execute("SELECT count(*) FROM collect.submissions WHERE form_id = %s", (form,))
            assert cur.fetchone()[0] == 0, "the task deleted every row"  # type: ignore[index]
            cur.execute("SELECT count(*), sum(pg_column_size(before_image)) FROM "
                        "longtask.undo_journal WHERE task_uid = %s", (task.uid,))
            entries, image_bytes = cur.fetchone()  # type: ignore[misc]
            cur.execute("SELECT pg_total_relation_size('longtask.undo_journal')")
            journal_bytes = cur.fetchone()[0]  # type: ignore[index]
            restored = run(url, task, "rollback")
            cur.execute(f"SELECT count(*) FROM (SELECT {COLUMNS} FROM collect.submissions "
                        f"EXCEPT SELECT {COLUMNS} FROM bench_saved) d")
            assert cur.fetchone()[0] == 0, "the rollback restored every row"  # type: ignore[index]

        n = args.rows
        print(f"delete   {n:>9,} rows: task {deleted:6.2f} s ({n / deleted:9,.0f} rows/s)  "
              f"plain chunked DELETE {plain:6.2f} s  ratio plain/task {plain / deleted:5.2f}")
        print(f"restore  {n:>9,} rows: rollback {restored:6.2f} s ({n / restored:9,.0f} rows/s)"
              f"  INSERT ... SELECT {restore_plain:6.2f} s  ratio plain/rollback "
              f"{restore_plain / restored:5.2f}")
        print(f"undo journal: {entries:,} entries, {image_bytes / entries:6.0f} bytes of "
              f"before-image a row, {journal_bytes / entries:6.0f} bytes a row with the "
              f"table's indexes")


if __name__ == "__main__":
    main()
