"""Export against a real PostgreSQL server: range rules, parts, resume, rollback."""

from __future__ import annotations

import csv
import datetime as dt
import io
import signal
import threading
import time

import pytest
import runner_support as s
from longtask.runner.cli import execute
from longtask.runner.engine import StopToken
from longtask.runner.tasks.export import read_output

from devcluster import seed
from longtask import constants
from longtask.settings import RunnerSettings

UTC = dt.UTC
SMALL_CHUNKS = RunnerSettings(chunk_initial_rows=300, chunk_min_rows=300, chunk_max_rows=300)


@pytest.fixture
def survey(db):  # type: ignore[no-untyped-def]
    org = s.create_org(db)
    form = seed.submission_form(db, org)
    seed.submissions(db, org, form, 5000, dt.datetime(2015, 1, 1, tzinfo=UTC),
                     dt.datetime(2019, 1, 1, tzinfo=UTC))
    return org, form


def sql_count(db, form: int, start: str, end: str) -> int:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.submissions WHERE form_id = %s "
                    "AND submitted_at >= %s AND submitted_at < %s", (form, start, end))
        return int(cur.fetchone()[0])


def export(**params: object) -> s.TaskDefinition:
    return s.task("Export", {"form": "household-survey", **params})


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def test_export_matches_a_direct_count_and_carries_a_header(runner_db_url, db, db_url, survey):
    task = export(**{"from": "2017-08-01", "to": "2018-12-31"})
    assert s.run_inline(runner_db_url, task, settings=SMALL_CHUNKS) == constants.EXIT_DONE

    rows = rows_of(read_output(db, task.uid))
    expected = sql_count(db, survey[1], "2017-08-01T00:00:00Z", "2019-01-01T00:00:00Z")
    assert rows[0] == ["submission_id", "submitted_at", "respondent", "village",
                       "household_size", "visited_on", "phone", "services", "location"]
    assert len(rows) - 1 == expected
    rec = s.record(db, task.uid)
    assert (rec["run_status"], rec["total"], rec["done"]) == ("succeeded", expected, expected)
    assert rows[1][7] == "doctor pharmacy", "select_multiple written space-separated"
    assert rows[1][3].startswith("Village, \""), "commas and quotes survive the CSV round trip"
    times = [r[1] for r in rows[1:]]
    assert times == sorted(times)


def test_dates_are_inclusive_in_the_declared_time_zone(runner_db_url, db, db_url, survey):
    org, form = survey
    with db.cursor() as cur:
        cur.execute("DELETE FROM collect.submissions")
        for instant in ("2017-07-31T18:29:59.999999Z",  # 23:59:59.999999 IST, 31 July: out
                        "2017-07-31T18:30:00Z",         # 00:00 IST, 1 August: in
                        "2017-08-02T18:29:59Z",         # 23:59:59 IST, 2 August: in
                        "2017-08-02T18:30:00Z"):        # 00:00 IST, 3 August: out
            cur.execute("INSERT INTO collect.submissions (organization_id, form_id, "
                        "submitted_at, data) VALUES (%s, %s, %s, '{}')", (org, form, instant))
    task = export(**{"from": "2017-08-01", "to": "2017-08-02", "timeZone": "Asia/Kolkata"})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    rows = rows_of(read_output(db, task.uid))
    assert [r[1] for r in rows[1:]] == ["2017-08-01T00:00:00.000000+05:30",
                                        "2017-08-02T23:59:59.000000+05:30"]


@pytest.mark.parametrize(("params", "words"), [
    ({"from": "2018-01-02", "to": "2018-01-01"}, "after"),
    ({"from": "2017-02-30", "to": "2018-01-01"}, "from"),
    ({"from": "2017-01-01", "to": "2018-01-01", "timeZone": "Mars/Olympus"}, "time zone"),
])
def test_impossible_ranges_are_refused_before_anything_runs(
        runner_db_url, db, db_url, survey, params, words):
    task = export(**params)
    assert s.run_inline(runner_db_url, task) == constants.EXIT_FAILED
    assert words in s.record(db, task.uid)["message"]
    assert read_output(db, task.uid) == b""


def test_unknown_column_is_refused_naming_the_fields(runner_db_url, db, db_url, survey):
    task = export(**{"from": "2017-01-01", "to": "2017-12-31", "columns": ["respondent", "age"]})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_FAILED
    assert "'age'" in s.record(db, task.uid)["message"]


def test_selected_columns_only(runner_db_url, db, db_url, survey):
    task = export(**{"from": "2016-01-01", "to": "2016-01-31", "columns": ["phone"]})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    rows = rows_of(read_output(db, task.uid))
    assert rows[0] == ["submission_id", "submitted_at", "phone"]
    assert all(r[2].startswith("+9198") for r in rows[1:])


@pytest.mark.timeout(180)
def test_stopped_export_resumes_to_the_same_bytes(runner_db_url, db, db_url, survey, tmp_path):
    params = {"from": "2015-08-01", "to": "2018-12-31"}
    reference = export(**params)
    assert s.run_inline(runner_db_url, reference, settings=SMALL_CHUNKS) == constants.EXIT_DONE

    task = s.task("Export", {"form": "household-survey", **params}, rate_limit=2000)
    proc = s.spawn(runner_db_url, task, log=tmp_path / "export.log")
    s.wait_for_progress(db, task.uid, proc, tmp_path / "export.log")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == constants.EXIT_STOPPED
    partial = s.record(db, task.uid)["done"]
    assert 0 < partial < s.record(db, task.uid)["total"]

    assert s.run_inline(runner_db_url, task, settings=SMALL_CHUNKS) == constants.EXIT_DONE
    assert read_output(db, task.uid) == read_output(db, reference.uid)


@pytest.mark.parametrize("connections", [1, 3])
def test_pieces_read_on_several_connections_are_stored_in_order(runner_db_url, db, db_url, survey,
                                                               connections):
    params = {"from": "2015-08-01", "to": "2018-12-31"}
    reference = export(**params)  # the default: two copiers
    assert s.run_inline(runner_db_url, reference, settings=SMALL_CHUNKS) == constants.EXIT_DONE
    task = export(**params)
    settings = SMALL_CHUNKS.model_copy(update={"export_read_connections": connections})
    assert s.run_inline(runner_db_url, task, settings=settings) == constants.EXIT_DONE
    assert read_output(db, task.uid) == read_output(db, reference.uid)
    with db.cursor() as cur:
        cur.execute("SELECT task_uid = %s, count(*), sum(rows) FROM longtask.export_parts "
                    "WHERE task_uid IN (%s, %s) GROUP BY 1 ORDER BY 1",
                    (task.uid, task.uid, reference.uid))
        (_, ref_parts, ref_rows), (_, parts, rows) = cur.fetchall()
    assert (parts, rows) == (ref_parts, ref_rows) and parts > 5


@pytest.mark.timeout(60)
def test_a_stopped_export_cancels_its_reads_and_closes_their_connections(db, runner_db_url,
                                                                         survey):
    task = s.task("Export", {"form": "household-survey", "from": "2015-01-01",
                             "to": "2018-12-31"}, rate_limit=1000)
    stop = StopToken()
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(
        execute(task, "run", runner_db_url, stop, SMALL_CHUNKS)))
    runner.start()
    deadline = time.monotonic() + 30
    while not s.record_or_none(db, task.uid, "done"):
        assert time.monotonic() < deadline and runner.is_alive(), "no progress"
        time.sleep(0.02)
    stop.request("test stop")
    runner.join(timeout=10)
    assert not runner.is_alive() and codes == [constants.EXIT_STOPPED]
    # A closed connection's server process leaves pg_stat_activity a moment later.
    deadline = time.monotonic() + 5
    while True:
        with db.cursor() as cur:
            cur.execute("SELECT array_agg(application_name) FROM pg_stat_activity "
                        "WHERE application_name LIKE 'longtask-runner-run%%'")
            left = cur.fetchone()[0]
        if not left:
            break
        assert time.monotonic() < deadline, f"connections left open: {left}"
        time.sleep(0.05)


def test_rollback_removes_every_part(runner_db_url, db, db_url, survey):
    task = export(**{"from": "2015-08-01", "to": "2018-12-31"})
    assert s.run_inline(runner_db_url, task, settings=SMALL_CHUNKS) == constants.EXIT_DONE
    assert read_output(db, task.uid) != b""
    assert s.run_inline(runner_db_url, task, "rollback",
                        settings=SMALL_CHUNKS) == constants.EXIT_DONE
    assert read_output(db, task.uid) == b""
    assert s.record(db, task.uid)["rollback_status"] == "succeeded"


FORMULA_ANSWERS = {
    # respondent answer: (escaped, why)
    "=HYPERLINK(\"http://x.example\",\"click\")": True,
    "@SUM(1+1)": True,
    "-2+3+cmd|' /C calc'!A0": True,
    "+HYPERLINK(1)": True,
    "\tinvisible": True,
    "Awa Diop": False,
    "+919812345678": False,  # a phone number: a number to a spreadsheet
    "-12.5": False,
    "+1 (555) 123-4567": False,
}


@pytest.mark.parametrize("formula_cells", ["escape", "keep"])
def test_cells_a_spreadsheet_would_run_are_escaped_unless_kept(runner_db_url, db, db_url, survey,
                                                                formula_cells):
    with db.cursor() as cur:
        for i, answer in enumerate(FORMULA_ANSWERS):
            cur.execute("UPDATE collect.submissions SET data = jsonb_set(data, '{respondent}', "
                        "to_jsonb(%s::text)), submitted_at = %s WHERE id = (SELECT min(id) + %s "
                        "FROM collect.submissions)",
                        (answer, dt.datetime(2020, 1, 1, 0, i, tzinfo=UTC), i))
    params = {"from": "2020-01-01", "to": "2020-01-01", "columns": ["respondent", "household_size"]}
    if formula_cells == "keep":
        params["formulaCells"] = "keep"
    task = export(**params)
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE

    rows = rows_of(read_output(db, task.uid))[1:]
    got = [r[2] for r in rows]
    if formula_cells == "keep":
        assert got == list(FORMULA_ANSWERS)
    else:
        assert got == [f"'{a}" if escaped else a for a, escaped in FORMULA_ANSWERS.items()]
    assert all(not r[3].startswith("'") for r in rows), "numbers are never escaped"
    assert all(r[1].startswith("2020-01-01T") for r in rows), "fixed columns are never escaped"
