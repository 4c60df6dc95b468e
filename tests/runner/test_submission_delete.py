"""BulkSubmissionDelete against a real PostgreSQL server, as the runner's own role: the
filter, the journal written with each delete, resume after a stop, the maxRows guard,
and a rollback that restores every row exactly, reporting the ones it cannot."""

from __future__ import annotations

import datetime as dt
import random
import signal
import time

import pytest
import runner_support as s

from devcluster import seed
from longtask import constants
from longtask.settings import RunnerSettings

UTC = dt.UTC
SMALL_CHUNKS = RunnerSettings(chunk_initial_rows=250, chunk_min_rows=250, chunk_max_rows=250)
RANGE = {"from": "2016-01-01", "to": "2017-12-31"}

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def survey(db):  # type: ignore[no-untyped-def]
    org = s.create_org(db)
    form = seed.submission_form(db, org)
    seed.submissions(db, org, form, 4000, dt.datetime(2015, 1, 1, tzinfo=UTC),
                     dt.datetime(2019, 1, 1, tzinfo=UTC))
    other = s.create_org(db, "globex")
    other_form = seed.submission_form(db, other)
    seed.submissions(db, other, other_form, 500, dt.datetime(2015, 1, 1, tzinfo=UTC),
                     dt.datetime(2019, 1, 1, tzinfo=UTC))
    return org, form


def delete(**params: object) -> s.TaskDefinition:
    return s.task("BulkSubmissionDelete", {"form": "household-survey", **RANGE, **params})


def matching(db, form: int, where: str = "true") -> int:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.submissions WHERE form_id = %s AND "
                    "submitted_at >= '2016-01-01Z' AND submitted_at < '2018-01-01Z' AND "
                    + where, (form,))
        count = int(cur.fetchone()[0])
    db.commit()
    return count


def journal(db, uid) -> int:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM longtask.undo_journal WHERE task_uid = %s "
                    "AND table_name = 'submissions' AND after_version = 0", (uid,))
        count = int(cur.fetchone()[0])
    db.commit()
    return count


def test_deletes_what_matches_and_a_rollback_restores_every_row(runner_db_url, db, survey):
    _org, form = survey
    before = s.checksum(db, "submissions")
    expected = matching(db, form, "submitted_by = 'worker03'")
    where = {"household_size": "3"}  # worker03 and household size 3 are the same rows
    assert matching(db, form, "data->>'household_size' = '3'") == expected > 0

    task = delete(where=where)
    assert s.run_inline(runner_db_url, task, settings=SMALL_CHUNKS) == constants.EXIT_DONE

    rec = s.record(db, task.uid)
    assert (rec["run_status"], rec["total"], rec["done"]) == ("succeeded", expected, expected)
    assert matching(db, form, "data->>'household_size' = '3'") == 0
    assert matching(db, form) > 0, "the rest of the range stays"
    assert journal(db, task.uid) == expected, "one before-image per deleted row"
    assert s.checksum(db, "submissions")[0] == before[0] - expected

    assert s.run_inline(runner_db_url, task, "rollback",
                        settings=SMALL_CHUNKS) == constants.EXIT_DONE
    assert s.checksum(db, "submissions") == before, "every row back, id and all"
    rec = s.record(db, task.uid)
    assert (rec["rollback_status"], rec["rollback_done"], rec["rollback_conflicts"]) == (
        "succeeded", expected, 0)


def test_another_organization_and_the_rest_of_the_range_are_untouched(runner_db_url, db,
                                                                      survey):
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.submissions s JOIN collect.organizations o "
                    "ON o.id = s.organization_id WHERE o.slug = 'globex'")
        globex = cur.fetchone()[0]
    db.commit()
    task = delete()
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    with db.cursor() as cur:
        cur.execute("SELECT o.slug, count(*) FILTER (WHERE submitted_at >= '2016-01-01Z' "
                    "AND submitted_at < '2018-01-01Z'), count(*) FROM collect.submissions s "
                    "JOIN collect.organizations o ON o.id = s.organization_id GROUP BY 1")
        counts = {slug: (inside, total) for slug, inside, total in cur.fetchall()}
    db.commit()
    assert counts["acme"][0] == 0 and counts["acme"][1] > 0, counts
    assert counts["globex"][1] == globex, "another organization's form of the same name"


@pytest.mark.timeout(180)
def test_a_stopped_delete_resumes_where_it_stopped_and_rolls_back_whole(
        runner_db_url, db, survey, tmp_path):
    _org, form = survey
    before = s.checksum(db, "submissions")
    expected = matching(db, form)
    task = s.task("BulkSubmissionDelete", {"form": "household-survey", **RANGE},
                  rate_limit=500)
    proc = s.spawn(runner_db_url, task, log=tmp_path / "delete.log")
    s.wait_for_progress(db, task.uid, proc, tmp_path / "delete.log")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == constants.EXIT_STOPPED
    partial = s.record(db, task.uid)["done"]
    assert 0 < partial < expected
    assert journal(db, task.uid) == partial == expected - matching(db, form), \
        "what is gone is exactly what is journaled and counted"

    assert s.run_inline(runner_db_url, task, settings=SMALL_CHUNKS) == constants.EXIT_DONE
    assert matching(db, form) == 0
    assert s.record(db, task.uid)["done"] == expected == journal(db, task.uid)
    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE
    assert s.checksum(db, "submissions") == before


def test_a_filter_wider_than_max_rows_deletes_nothing(runner_db_url, db, survey):
    _org, _form = survey
    before = s.checksum(db, "submissions")
    task = delete(maxRows=10)
    assert s.run_inline(runner_db_url, task) == constants.EXIT_FAILED
    rec = s.record(db, task.uid)
    assert "more than maxRows (10)" in rec["message"] and "nothing was deleted" in rec["message"]
    assert s.checksum(db, "submissions") == before


def test_an_unknown_where_field_is_refused_naming_the_fields(runner_db_url, db, survey):
    task = delete(where={"household_sise": "3"})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_FAILED
    message = s.record(db, task.uid)["message"]
    assert "'household_sise'" in message and "'household_size'" in message, message


def test_a_row_whose_id_is_taken_again_is_reported_not_overwritten(runner_db_url, db, survey):
    org, form = survey
    task = delete(where={"household_size": "5"})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    with db.cursor() as cur:
        cur.execute("SELECT row_id FROM longtask.undo_journal WHERE task_uid = %s "
                    "ORDER BY seq LIMIT 1", (task.uid,))
        taken = cur.fetchone()[0]
        cur.execute("INSERT INTO collect.submissions (id, organization_id, form_id, "
                    "submitted_at, data) OVERRIDING SYSTEM VALUE VALUES (%s, %s, %s, now(), "
                    "'{\"respondent\": \"someone else\"}')", (taken, org, form))
    db.commit()

    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE
    rec = s.record(db, task.uid)
    assert rec["rollback_conflicts"] == 1
    with db.cursor() as cur:
        cur.execute("SELECT table_name, row_id, reason FROM longtask.rollback_conflicts "
                    "WHERE task_uid = %s", (task.uid,))
        assert cur.fetchall() == [("submissions", taken,
                                   "its id was taken again after the task deleted it")]
        cur.execute("SELECT data->>'respondent' FROM collect.submissions WHERE id = %s",
                    (taken,))
        assert cur.fetchone()[0] == "someone else", "the new row is not overwritten"
    db.commit()
    assert matching(db, form, "data->>'household_size' = '5'") == journal(db, task.uid) - 1


@pytest.mark.timeout(420)
def test_sigterms_and_sigkills_anywhere_delete_each_row_once_and_restore_all(
        runner_db_url, db, tmp_path):
    """The engine's chaos run on the delete type: interrupted at random and resumed each
    time, the run ends with exactly the matching rows gone, each journaled once; a
    rollback killed mid-way and run again then restores the table byte for byte."""
    org = s.create_org(db)
    form = seed.submission_form(db, org)
    seed.submissions(db, org, form, 30_000, dt.datetime(2015, 1, 1, tzinfo=UTC),
                     dt.datetime(2019, 1, 1, tzinfo=UTC))
    before = s.checksum(db, "submissions")
    with db.cursor() as cur:
        cur.execute("SELECT array_agg(id ORDER BY id) FROM collect.submissions WHERE "
                    "submitted_at >= '2016-01-01Z' AND submitted_at < '2018-01-01Z'")
        doomed = cur.fetchone()[0]
    db.commit()
    task = s.task("BulkSubmissionDelete", {"form": "household-survey", **RANGE},
                  rate_limit=1500)
    rng = random.Random(20261204)
    terms = kills = 0
    deadline = time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline, "the chaos run did not finish in time"
        proc = s.spawn(runner_db_url, task, log=tmp_path / "runner.log")
        if terms + kills < 12:
            time.sleep(rng.uniform(0.3, 1.0))
            sig = signal.SIGTERM if rng.random() < 0.5 else signal.SIGKILL
            proc.send_signal(sig)
            code = proc.wait(timeout=30)
            if code == constants.EXIT_DONE:
                break
            if sig == signal.SIGTERM:
                assert code == constants.EXIT_STOPPED, f"SIGTERM should stop, exit {code}"
                terms += 1
            else:
                kills += 1
        else:
            code = proc.wait(timeout=120)
            assert code == constants.EXIT_DONE, (tmp_path / "runner.log").read_text()[-3000:]
            break
    assert terms >= 3 and kills >= 3, f"too few interruptions: {terms} SIGTERM, {kills} SIGKILL"

    with db.cursor() as cur:
        cur.execute("SELECT array_agg(row_id ORDER BY row_id), count(*) FROM "
                    "longtask.undo_journal WHERE task_uid = %s", (task.uid,))
        journaled, entries = cur.fetchone()
        cur.execute("SELECT count(*) FROM collect.submissions WHERE id = ANY(%s)", (doomed,))
        left = cur.fetchone()[0]
    db.commit()
    assert left == 0 and journaled == doomed and entries == len(doomed), \
        "every matching row deleted, each journaled exactly once"
    rec = s.record(db, task.uid)
    assert (rec["run_status"], rec["done"], rec["total"]) == ("succeeded", len(doomed),
                                                              len(doomed))

    small = {"LONGTASK_RUNNER_CHUNK_MAX_ROWS": "200", "LONGTASK_RUNNER_CHUNK_INITIAL_ROWS": "200",
             "LONGTASK_RUNNER_CHUNK_MIN_ROWS": "50"}
    proc = s.spawn(runner_db_url, task, "rollback", env=small, log=tmp_path / "rollback.log")
    wait_until = time.monotonic() + 60
    while (s.record_or_none(db, task.uid, "rollback_done") or 0) < 1000:
        assert time.monotonic() < wait_until and proc.poll() is None, "no rollback progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert s.record(db, task.uid)["rollback_status"] == "running"
    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE
    assert s.checksum(db, "submissions") == before
    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE, "idempotent"
    assert s.checksum(db, "submissions") == before
