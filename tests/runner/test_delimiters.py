"""Files that are not comma-separated: the real village file saved as a spreadsheet in a
European locale saves it (``;``) and as tab-separated text loads exactly as the original
does, the delimiter detected from the header or named by the task."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import runner_support as s

from longtask import constants

KARNATAKA = "29-karnataka-constituency.csv"
CODE_FIELDS = {"Assembly Constituency Code", "Block Code", "District Code"}


def resaved(raw: bytes, delimiter: str) -> bytes:
    """``raw`` (a comma CSV) written again by Python's csv with ``delimiter`` and CRLF line
    ends, as a spreadsheet saves it: fields holding the delimiter are quoted."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerows(csv.reader(io.StringIO(raw.decode("utf-8"))))
    return out.getvalue().encode("utf-8")


@pytest.fixture
def villages(db: Any, real_data: Path) -> tuple[bytes, list[str]]:
    raw = (real_data / KARNATAKA).read_bytes()
    header = raw.split(b"\n", 1)[0].decode().split(",")
    org = s.create_org(db)
    for form in ("commas", "other"):
        s.create_form(db, org, form, [
            (name, "integer" if name in CODE_FIELDS else "text", name == "Village Name")
            for name in header if name != "Village Code"])
    return raw, header


def loaded(db: Any, form: str) -> list[tuple[str, str]]:
    with db.cursor() as cur:
        cur.execute("SELECT b.external_id, b.data::text FROM collect.baseline_records b "
                    "JOIN collect.forms f ON f.id = b.form_id WHERE f.name = %s "
                    "ORDER BY b.external_id", (form,))
        return list(cur.fetchall())


def load(db_url: str, data: bytes, form: str, **params: Any) -> Any:
    file_id = s.store_bytes(db_url, data, filename=f"{form}.csv")
    task = s.task("BaselineUpload", {"form": form, "fileId": file_id,
                                     "keyColumn": "Village Code", **params})
    assert s.run_inline(db_url, task) == constants.EXIT_DONE
    return task


@pytest.mark.parametrize(("delimiter", "named"), [(";", False), ("\t", True), ("|", False)],
                         ids=["semicolon-detected", "tab-named", "pipe-detected"])
def test_a_file_with_another_delimiter_loads_as_the_comma_original(
        db: Any, db_url: str, villages: tuple[bytes, list[str]], delimiter: str,
        named: bool) -> None:
    raw, _header = villages
    load(db_url, raw, "commas")
    other = resaved(raw, delimiter)
    assert other.count(delimiter.encode()) > 14859, "the twin uses the delimiter"

    task = load(db_url, other, "other", **({"delimiter": delimiter} if named else {}))

    rec = s.record(db, task.uid)
    assert (rec["run_status"], rec["done"]) == ("succeeded", 14859), rec
    assert loaded(db, "other") == loaded(db, "commas")
    assert len(loaded(db, "other")) > 10_000


def test_a_wrong_named_delimiter_reads_one_column_and_says_which_is_missing(
        db: Any, db_url: str, villages: tuple[bytes, list[str]]) -> None:
    """Naming ',' for a ';' file reads the header as one column: the key column is missing,
    and the run fails before writing anything, naming it."""
    raw, _header = villages

    file_id = s.store_bytes(db_url, resaved(raw, ";"), filename="semicolons.csv")
    task = s.task("BaselineUpload", {"form": "other", "fileId": file_id,
                                     "keyColumn": "Village Code", "delimiter": ","})

    assert s.run_inline(db_url, task) == constants.EXIT_FAILED
    assert "Village Code" in (s.record(db, task.uid)["message"] or "")
    assert loaded(db, "other") == []


def test_a_headerless_team_file_with_semicolons_creates_the_teams_of_its_comma_original(
        db: Any, db_url: str, real_data: Path) -> None:
    """The real NHS practice list (no header) resaved with ';': the delimiter is told from
    its first line, and the same teams and managers are made as from the comma file."""
    s.create_org(db)
    raw = (real_data / "epraccur.csv").read_bytes()
    params = {"defaultRegion": "GB", "hasHeader": False, "teamColumn": "#2",
              "managerPhoneColumn": "#18", "memberPhonesColumn": None, "maxRowErrors": 5000}
    made = []
    for data in (raw, resaved(raw, ";")):
        file_id = s.store_bytes(db_url, data, filename="epraccur.csv")
        task = s.task("BulkTeamCreate", {"fileId": file_id, **params})
        assert s.run_inline(db_url, task) == constants.EXIT_DONE
        with db.cursor() as cur:
            cur.execute("SELECT t.name, u.phone_e164 FROM collect.teams t "
                        "JOIN collect.team_memberships m ON m.team_id = t.id "
                        "JOIN collect.field_users u ON u.id = m.user_id "
                        "WHERE t.task_uid = %s ORDER BY t.name", (str(task.uid),))
            made.append(cur.fetchall())
        rec = s.record(db, task.uid)
        assert rec["done"] == 14357, rec
        # Rolled back, so the second file's teams are not refused as already existing.
        assert s.run_inline(db_url, task, "rollback") == constants.EXIT_DONE

    assert len(made[0]) > 13000
    assert made[1] == made[0]
