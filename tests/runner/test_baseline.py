"""BaselineUpload against a real PostgreSQL server, on the real files in shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest
import runner_support as s

from longtask import constants

KARNATAKA = "29-karnataka-constituency.csv"
CODE_FIELDS = {"Assembly Constituency Code", "Block Code", "District Code"}


def karnataka_form(db, org_id: int, header: list[str]) -> int:  # type: ignore[no-untyped-def]
    """A form whose fields are the file's columns; a few codes typed as integers."""
    fields = [(name, "integer" if name in CODE_FIELDS else "text", name == "Village Name")
              for name in header if name != "Village Code"]
    return s.create_form(db, org_id, "villages", fields)


@pytest.fixture
def karnataka(db, shared_data: Path):  # type: ignore[no-untyped-def]
    raw = (shared_data / KARNATAKA).read_bytes()
    header = raw.split(b"\n", 1)[0].decode().split(",")
    org = s.create_org(db)
    karnataka_form(db, org, header)
    return raw


def test_real_village_file_loads_with_duplicate_codes_as_row_errors(db, db_url, karnataka):
    file_id = s.store_bytes(db_url, karnataka, filename=KARNATAKA)
    task = s.task("BaselineUpload", {"form": "villages", "fileId": file_id,
                                     "keyColumn": "Village Code"})

    assert s.run_inline(db_url, task) == constants.EXIT_DONE

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


def test_rollback_after_completion_leaves_tables_as_before(db, db_url, karnataka):
    before = s.snapshot(db)
    file_id = s.store_bytes(db_url, karnataka, filename=KARNATAKA)
    task = s.task("BaselineUpload", {"form": "villages", "fileId": file_id,
                                     "keyColumn": "Village Code"})
    assert s.run_inline(db_url, task) == constants.EXIT_DONE
    assert s.snapshot(db) != before

    assert s.run_inline(db_url, task, "rollback") == constants.EXIT_DONE

    assert s.snapshot(db) == before
    rec = s.record(db, task.uid)
    assert rec["rollback_status"] == "succeeded"
    assert rec["rollback_conflicts"] == 0


def test_run_refuses_to_start_once_rollback_began(db, db_url, karnataka):
    file_id = s.store_bytes(db_url, karnataka, filename=KARNATAKA)
    task = s.task("BaselineUpload", {"form": "villages", "fileId": file_id,
                                     "keyColumn": "Village Code"})
    assert s.run_inline(db_url, task, "rollback") == constants.EXIT_DONE

    assert s.run_inline(db_url, task) == constants.EXIT_FENCED
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.baseline_records")
        assert cur.fetchone()[0] == 0
