"""BaselineUpload against a real PostgreSQL server, on the real files in data/real."""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path

import psycopg2.errors
import pytest
import runner_support as s
from longtask.runner.engine import RateWindow

from longtask import constants, taskrecord
from longtask.db import connect
from longtask.settings import RunnerSettings

KARNATAKA = "29-karnataka-constituency.csv"
CODE_FIELDS = {"Assembly Constituency Code", "Block Code", "District Code"}


def karnataka_form(db, org_id: int, header: list[str]) -> int:  # type: ignore[no-untyped-def]
    """A form whose fields are the file's columns; a few codes typed as integers."""
    fields = [(name, "integer" if name in CODE_FIELDS else "text", name == "Village Name")
              for name in header if name != "Village Code"]
    return s.create_form(db, org_id, "villages", fields)


@pytest.fixture
def karnataka(db, real_data: Path):  # type: ignore[no-untyped-def]
    raw = (real_data / KARNATAKA).read_bytes()
    header = raw.split(b"\n", 1)[0].decode().split(",")
    org = s.create_org(db)
    karnataka_form(db, org, header)
    return raw


def test_real_village_file_loads_with_duplicate_codes_as_row_errors(
        runner_db_url, db, db_url, karnataka):
    file_id = s.store_bytes(db_url, karnataka, filename=KARNATAKA)
    task = s.task("BaselineUpload", {"form": "villages", "fileId": file_id,
                                     "keyColumn": "Village Code"})

    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE

    rec = s.record(db, task.uid)
    assert (rec["run_status"], rec["total"], rec["done"]) == ("succeeded", 14859, 14859)
    with db.cursor() as cur:
        cur.execute("SELECT count(DISTINCT split_part(l, ',', 19)) FROM "
                    "unnest(string_to_array(%s, E'\\n')) l WHERE l <> '' OFFSET 0",
                    (karnataka.decode().split("\n", 1)[1],))
        distinct_codes = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM collect.baseline_records")
        loaded = cur.fetchone()[0]
        cur.execute("SELECT data->>'Subdistrict Census 2011 Code', data->'Block Code' "
                    "FROM collect.baseline_records WHERE external_id = '601014'")
        census, block = cur.fetchone()
    assert loaded == distinct_codes, f"one row per village code, got {loaded}/{distinct_codes}"
    assert rec["row_errors"] == 14859 - distinct_codes
    errors = s.row_errors(db, task.uid)
    assert all("duplicate external id" in reason for _l, _c, reason in errors)
    assert errors[0][1] == "Village Code"
    assert census == "05462", "leading zeros of census codes survive as text"
    assert block == 5895


def test_rollback_after_completion_leaves_tables_as_before(runner_db_url, db, db_url, karnataka):
    before = s.snapshot(db)
    file_id = s.store_bytes(db_url, karnataka, filename=KARNATAKA)
    task = s.task("BaselineUpload", {"form": "villages", "fileId": file_id,
                                     "keyColumn": "Village Code"})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    assert s.snapshot(db) != before

    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE

    assert s.snapshot(db) == before
    rec = s.record(db, task.uid)
    assert rec["rollback_status"] == "succeeded"
    assert rec["rollback_conflicts"] == 0


def test_run_refuses_to_start_once_rollback_began(runner_db_url, db, db_url, karnataka):
    file_id = s.store_bytes(db_url, karnataka, filename=KARNATAKA)
    task = s.task("BaselineUpload", {"form": "villages", "fileId": file_id,
                                     "keyColumn": "Village Code"})
    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE

    assert s.run_inline(runner_db_url, task) == constants.EXIT_FENCED
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.baseline_records")
        assert cur.fetchone()[0] == 0


PEOPLE = [("name", "text", True), ("age", "integer", False)]


@pytest.fixture
def people(db):  # type: ignore[no-untyped-def]
    org = s.create_org(db)
    s.create_form(db, org, "people", PEOPLE)
    return org


def seed_people(db, org: int, rows: dict[str, dict[str, object]]) -> None:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        for ext, data in rows.items():
            cur.execute("INSERT INTO collect.baseline_records (organization_id, form_id, "
                        "external_id, data) SELECT %s, id, %s, %s FROM collect.forms "
                        "WHERE name = 'people'", (org, ext, s.psycopg2.extras.Json(data)))


def people_rows(db) -> dict[str, dict[str, object]]:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute("SELECT external_id, data FROM collect.baseline_records")
        return dict(cur.fetchall())


def test_upsert_updates_existing_rows_and_rollback_restores_them(runner_db_url, db, db_url, people):
    seed_people(db, people, {"A1": {"name": "Old Asha", "age": 30}, "Z9": {"name": "Zed"}})
    before = s.snapshot(db)
    file_id = s.store_bytes(db_url, b"id,name,age\nA1,Asha,31\nB2,Binta,25\n")
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id",
                                     "mode": "upsert"})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    assert people_rows(db) == {"A1": {"name": "Asha", "age": 31}, "B2": {"name": "Binta",
                                                                         "age": 25},
                               "Z9": {"name": "Zed"}}

    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE
    assert s.snapshot(db) == before
    assert people_rows(db)["A1"] == {"name": "Old Asha", "age": 30}


def test_insert_mode_leaves_existing_ids_alone_as_row_errors(runner_db_url, db, db_url, people):
    seed_people(db, people, {"A1": {"name": "Old Asha"}})
    file_id = s.store_bytes(db_url, b"id,name\nA1,Asha\nB2,Binta\n")
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    assert people_rows(db)["A1"] == {"name": "Old Asha"}
    [(line, column, reason)] = s.row_errors(db, task.uid)
    assert (line, column) == (2, "id") and "already exists" in reason


def test_rollback_leaves_rows_changed_by_others_and_reports_them(runner_db_url, db, db_url, people):
    seed_people(db, people, {"A1": {"name": "Old Asha"}})
    file_id = s.store_bytes(db_url, b"id,name\nA1,Asha\nB2,Binta\nC3,Chen\n")
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id",
                                     "mode": "upsert"})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    with db.cursor() as cur:
        cur.execute("UPDATE collect.baseline_records SET data = '{\"name\": \"Asha K\"}' "
                    "WHERE external_id = 'A1'")
        cur.execute("UPDATE collect.baseline_records SET data = '{\"name\": \"Binta D\"}' "
                    "WHERE external_id = 'B2' RETURNING id")
        b2 = cur.fetchone()[0]

    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE

    assert people_rows(db) == {"A1": {"name": "Asha K"}, "B2": {"name": "Binta D"}}
    with db.cursor() as cur:
        cur.execute("SELECT table_name, row_id, reason FROM longtask.rollback_conflicts "
                    "ORDER BY reason")
        conflicts = cur.fetchall()
    assert [c[2] for c in conflicts] == ["changed by someone else after the task inserted it",
                                        "changed by someone else after the task updated it"]
    assert conflicts[0][1] == b2
    assert s.record(db, task.uid)["rollback_conflicts"] == 2


@pytest.mark.timeout(180)
def test_rollback_after_a_stop_mid_run_and_a_crash_mid_rollback(
        runner_db_url, db, db_url, people, tmp_path):
    seed_people(db, people, {f"E{i}": {"name": f"Existing {i}"} for i in range(300)})
    before = s.snapshot(db)
    body = "".join(f"E{i},Updated {i},{i}\n" for i in range(300))
    body += "".join(f"N{i},New {i},{i % 90}\n" for i in range(20_000))
    file_id = s.store_bytes(db_url, ("id,name,age\n" + body).encode())
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id",
                                     "mode": "upsert"}, rate_limit=4000)
    run = s.spawn(runner_db_url, task, log=tmp_path / "run.log")
    deadline = time.monotonic() + 60
    while (s.record_or_none(db, task.uid, "done") or 0) < 2000:
        assert time.monotonic() < deadline and run.poll() is None, "no progress"
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)  # a pause: the Job is suspended
    assert run.wait(timeout=30) == constants.EXIT_STOPPED
    assert s.snapshot(db) != before

    slow = dataclasses.replace(task, rate_limit=None)
    rollback = s.spawn(runner_db_url, slow, "rollback", log=tmp_path / "rollback.log",
                       env={"LONGTASK_RUNNER_CHUNK_MAX_ROWS": "100",
                            "LONGTASK_RUNNER_CHUNK_INITIAL_ROWS": "100"})
    while (s.record_or_none(db, task.uid, "rollback_done") or 0) < 300:
        assert time.monotonic() < deadline + 60 and rollback.poll() is None, "no rollback"
        time.sleep(0.01)
    rollback.send_signal(signal.SIGKILL)  # the rollback pod crashes half-way
    rollback.wait(timeout=30)
    assert s.record(db, task.uid)["rollback_status"] == "running"

    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE
    assert s.snapshot(db) == before
    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE, "idempotent"
    assert s.snapshot(db) == before


@pytest.mark.timeout(120)
def test_the_total_is_counted_beside_the_chunks_and_again_after_a_stop_before_it(runner_db_url,
        db, db_url, people, tmp_path):
    rows = 20_000
    body = "".join(f"N{i},New {i},{i % 90}\n" for i in range(rows))
    file_id = s.store_bytes(db_url, ("id,name,age\n" + body).encode())
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"},
                  rate_limit=4000)

    def total_while_running(proc) -> int:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 60
        while True:
            total = s.record_or_none(db, task.uid, "total")
            if total is not None:
                assert s.record(db, task.uid)["done"] < rows, "known only at the end"
                return int(total)
            assert time.monotonic() < deadline and proc.poll() is None, "no total"
            time.sleep(0.02)

    run = s.spawn(runner_db_url, task, log=tmp_path / "run.log")
    assert total_while_running(run) == rows
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == constants.EXIT_STOPPED
    # As a run stopped before its count ended leaves it: the next run counts again.
    with db.cursor() as cur:
        cur.execute("UPDATE longtask.tasks SET total = NULL WHERE uid = %s", (task.uid,))
    resumed = s.spawn(runner_db_url, task, log=tmp_path / "resumed.log")
    assert total_while_running(resumed) == rows
    resumed.send_signal(signal.SIGTERM)
    assert resumed.wait(timeout=30) == constants.EXIT_STOPPED


@pytest.mark.timeout(60)
def test_a_statement_held_past_the_timeout_ends_the_run_as_a_crash(
        runner_db_url, db, db_url, people):
    file_id = s.store_bytes(db_url, b"id,name,age\nA1,Asha,31\n")
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"})
    blocker = connect(db_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE collect.baseline_records IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(psycopg2.errors.QueryCanceled, match="statement timeout"):
            s.run_inline(runner_db_url, task,
                         settings=RunnerSettings(statement_timeout_seconds=0.5))
    finally:
        blocker.rollback()
        blocker.close()
    assert (s.record(db, task.uid)["done"], people_rows(db)) == (0, {})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE, "the next start loads the file"
    assert set(people_rows(db)) == {"A1"}


ST_LOUIS = "St-Louis-Data-Collection-Campaign-Gth_Hs_Osm_11.csv"
ST_LOUIS_TYPES = {
    "Start": ("datetime", None), "Timestamp": ("datetime", None),
    "Phone Number": ("phone", {"region": "SN"}),
    "Facility Location / latitude": ("decimal", None),
    "Facility Location / longitude": ("decimal", None),
    "Which days is this facility open?": ("select_multiple", None),
    "Available Services": ("select_multiple", None),
    "Number of Beds": ("integer", None), "Number of Doctors": ("integer", None),
    "Number of Nurses": ("integer", None),
}


def test_real_field_export_with_line_breaks_in_cells_loads_and_flags_bad_phones(runner_db_url,
        db, db_url, real_data):
    raw = (real_data / ST_LOUIS).read_bytes()
    header = next(__import__("csv").reader([raw.split(b"\n", 1)[0].decode()]))
    org = s.create_org(db)
    fields = [(n, *ST_LOUIS_TYPES.get(n, ("text", None))) for n in header if n != "UUID"]
    s.create_form(db, org, "facilities", [(n, t, False, o) for n, t, o in fields])
    file_id = s.store_bytes(db_url, raw, filename=ST_LOUIS)
    task = s.task("BaselineUpload", {"form": "facilities", "fileId": file_id,
                                     "keyColumn": "UUID"})

    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE

    rec = s.record(db, task.uid)
    assert (rec["total"], rec["done"]) == (104, 104)
    errors = s.row_errors(db, task.uid)
    assert {column for _line, column, _reason in errors} == {"Phone Number"}
    assert len(errors) == 4, "four '+33…' numbers lost their 221 (the bare 339641179 is fine)"
    assert any("+221339614718" in reason for _l, _c, reason in errors), "the fix is suggested"
    with db.cursor() as cur:
        cur.execute("SELECT data FROM collect.baseline_records "
                    "WHERE external_id = '68ab1fbb-38fd-4451-853e-4fc901a71998'")
        first = cur.fetchone()[0]
    assert first["Phone Number"] == "+221339612727"
    assert first["Start"] == "2019-07-18T15:47:36.297000+00:00"
    assert first["Which days is this facility open?"] == ["Mo", "Tu", "We", "Th", "Fr",
                                                          "Sa", "Su"]
    assert first["Open hours by day of the week / Enter open hours for each day:"] == (
        "09:00-18:30\n08:00-11:00,12:30-15:00\nsunrise-sunset"), "quoted line breaks kept"
    assert rec["row_errors"] == 4 and s.count_rows(db, "baseline_records") == 100
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.baseline_records "
                    "WHERE data->>'Phone Number' = '+221339641179'")
        assert cur.fetchone()[0] == 1, "a bare Senegalese number gets its country code"


def test_spreadsheet_mangled_phones_and_other_date_formats_load(runner_db_url, db, db_url):
    org = s.create_org(db)
    s.create_form(db, org, "people", [("name", "text", True), ("phone", "phone", False),
                                      ("born", "date", False, {"dayfirst": True})])
    text = ("id,name,phone,born\n"
            "A1,Asha,9.19876543210E+11,18/07/1990\n"   # scientific notation, all digits
            "A2,Binta,98765-43210,1990-07-18\n"        # dashes
            "A3,Chen,+91 98765 43211,18 Jul 1990\n"    # spaces, month name
            "A4,Dara,9.19877E+11,03/04/1990\n"         # rounded by a spreadsheet
            "A5,Emeka,919876543212.0,19900718\n")      # float artefact, YYYYMMDD
    file_id = s.store_bytes(db_url, text.encode())
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    with db.cursor() as cur:
        cur.execute("SELECT external_id, data->>'phone', data->>'born' "
                    "FROM collect.baseline_records ORDER BY 1")
        rows = cur.fetchall()
    assert rows == [("A1", "+919876543210", "1990-07-18"), ("A2", "+919876543210",
                                                            "1990-07-18"),
                    ("A3", "+919876543211", "1990-07-18"), ("A5", "+919876543212",
                                                            "1990-07-18")]
    [(line, column, reason)] = s.row_errors(db, task.uid)
    assert (line, column) == (5, "phone") and "rounded" in reason


def test_a_record_first_made_by_a_hold_still_gets_the_runners_settings(
        runner_db_url, operator_db_url, db, db_url, people):
    file_id = s.store_bytes(db_url, b"id,name\nA1,Asha\n")
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"},
                  rate_limit=123)
    conn = s.connect(operator_db_url)  # the hold, as the operator (or the API) makes it
    try:
        for hold in ("Paused", None):  # paused before its pod ever started, then resumed
            named = dataclasses.replace(task, name="t", namespace="default")
            assert taskrecord.hold(conn, named, hold)
    finally:
        conn.close()
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    rec = s.record(db, task.uid)
    assert (rec["rate_limit"], rec["hold"], rec["run_status"]) == (123, None, "succeeded")


@pytest.mark.timeout(60)
def test_the_rate_of_a_throttled_task_is_its_rate_from_the_first_report(
        runner_db_url, db, db_url, people,
                                                                       tmp_path):
    # 2 rows a second: the runner writes a row, then waits; its first chunks are written
    # at once, which an estimate from one chunk would report as a rate far above 2.
    file_id = s.store_bytes(db_url, ("id,name,age\n" + "".join(
        f"R{i},Rated {i},{i}\n" for i in range(12))).encode())
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"},
                  rate_limit=2)
    run = s.spawn(runner_db_url, task, log=tmp_path / "run.log")
    seen: list[tuple[int, float | None]] = []
    deadline = time.monotonic() + 40
    while run.poll() is None:
        assert time.monotonic() < deadline, "the throttled run did not end"
        with db.cursor() as cur:  # both from one commit
            cur.execute("SELECT done, rate_per_second FROM longtask.tasks WHERE uid = %s",
                        (task.uid,))
            row = cur.fetchone()
        if row is not None:
            seen.append((row[0], row[1]))
        time.sleep(0.1)
    assert run.returncode == constants.EXIT_DONE

    rates = [r for _done, r in seen if r is not None]
    assert rates, seen
    assert all(1.0 <= r <= 3.0 for r in rates), seen
    assert all(r is None for done, r in seen if done <= 2), "no rate from the first commits"


def test_the_rate_window_spans_commits_and_forgets_the_old_ones() -> None:
    window = RateWindow(window=10, min_span=1)
    window.committed(0.0, 5)  # a first chunk written at once
    assert window.rate(0.5, 6) is None, "half a second of commits is no rate"
    window.committed(0.5, 6)
    assert window.rate(1.0, 7) == 2.0
    for t in range(1, 30):
        window.committed(float(t), 7 + 10 * t)  # 10 rows a second from then on
    assert window.rate(30.0, 7 + 300) == pytest.approx(10.0)
