"""Bad input is data, not a crash: each kind of broken file, on a real server.

A file that cannot be read at all fails the task before anything is written; a bad row
becomes a row error with its line, column and reason.
"""

from __future__ import annotations

import codecs

import pytest
import runner_support as s
from longtask.runner.engine import StopToken
from longtask.runner.errors import FileUnreadable
from longtask.runner.tasks import build_work

from longtask import constants, filestore
from longtask.db import connect
from longtask.settings import RunnerSettings

FIELDS = [("name", "text", True), ("age", "integer", False), ("joined", "date", False),
          ("phone", "phone", False)]


@pytest.fixture
def people(db):  # type: ignore[no-untyped-def]
    org = s.create_org(db)
    s.create_form(db, org, "people", FIELDS)
    return org


def upload(db_url: str, data: bytes, **params: object) -> tuple[int, s.TaskDefinition]:
    file_id = s.store_bytes(db_url, data)
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id",
                                     **params})
    return s.run_inline(db_url, task), task


def loaded(db) -> dict[str, dict[str, object]]:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute("SELECT external_id, data FROM collect.baseline_records")
        return dict(cur.fetchall())


def assert_failed_before_writing(db, task, code: int, *words: str) -> str:  # type: ignore[no-untyped-def]
    assert code == constants.EXIT_FAILED
    rec = s.record(db, task.uid)
    assert rec["run_status"] == "failed"
    message = rec["message"] or ""
    for word in words:
        assert word in message, f"{word!r} not in the failure message {message!r}"
    assert loaded(db) == {}, "nothing may be written"
    return message


GOOD = "id,name,age,joined\nA1,Asha,31,2019-07-16\n"


def test_utf8_bom_before_the_header_is_ignored(db, db_url, people):
    code, _ = upload(db_url, codecs.BOM_UTF8 + GOOD.encode())
    assert code == constants.EXIT_DONE
    assert loaded(db) == {"A1": {"name": "Asha", "age": 31, "joined": "2019-07-16"}}


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"], ids=["CRLF", "CR", "LF"])
def test_line_ends_of_every_kind_are_read(db, db_url, people, newline):
    text = newline.join(["id,name", "A1,Asha", "A2,Binta", ""])
    code, task = upload(db_url, text.encode())
    assert code == constants.EXIT_DONE
    assert set(loaded(db)) == {"A1", "A2"}
    assert s.record(db, task.uid)["total"] == 2


def test_quoted_fields_keep_commas_quotes_and_line_breaks(db, db_url, people):
    text = 'id,name\nA1,"Diallo, Aminata ""Mina""\nSaint-Louis"\nA2,Binta\n'
    code, _ = upload(db_url, text.encode())
    assert code == constants.EXIT_DONE
    assert loaded(db)["A1"]["name"] == 'Diallo, Aminata "Mina"\nSaint-Louis'
    assert loaded(db)["A2"]["name"] == "Binta"


def test_cp1252_file_is_detected_and_decoded(db, db_url, people):
    text = "id,name\nA1,Opérateur privé\nA2,Ndèye Fatou Ségnane\nA3,Łukasz\n"
    data = text.replace("Łukasz", "Zoë").encode("cp1252")
    code, _ = upload(db_url, data)
    assert code == constants.EXIT_DONE
    assert loaded(db)["A1"]["name"] == "Opérateur privé"
    assert loaded(db)["A3"]["name"] == "Zoë"


def test_utf16_spreadsheet_export_is_transcoded(db, db_url, people):
    data = "id,name\r\nA1,कुर्था\r\nA2,ಬೆಂಗಳೂರು\r\n".encode("utf-16")
    code, _ = upload(db_url, data)
    assert code == constants.EXIT_DONE
    assert loaded(db)["A1"]["name"] == "कुर्था"
    assert loaded(db)["A2"]["name"] == "ಬೆಂಗಳೂರು"


def test_empty_file_is_refused_by_the_store(db_url):
    with pytest.raises(FileUnreadable, match="empty"):
        s.store_bytes(db_url, b"")


def test_header_only_file_fails_before_writing(db, db_url, people):
    code, task = upload(db_url, b"id,name,age\n")
    assert_failed_before_writing(db, task, code, "no data rows")


def test_rows_of_unicode_spaces_only_are_no_data_rows_for_the_run_and_the_dry_run(
        db, db_url, people):
    data = "id,name\n\u00a0,\u00a0\n\u2007,\n".encode()
    code, task = upload(db_url, data)  # the runner: the count runs beside the chunks
    assert_failed_before_writing(db, task, code, "no data rows")
    # The API's dry run opens the work with no connection factory: it counts at once.
    conn = connect(db_url)
    conn.autocommit = True
    work = build_work(task, "run", conn, StopToken(), RunnerSettings())
    try:
        with pytest.raises(FileUnreadable, match="no data rows"):
            work.open(None)
    finally:
        work.close()
        conn.close()


def test_form_fields_a_header_cannot_tell_apart_are_refused_before_writing(db, db_url):
    org = s.create_org(db)
    s.create_form(db, org, "twins", [("Name", "text", True), ("name ", "text", False)])
    file_id = s.store_bytes(db_url, b"id,name\nA1,Asha\n")
    task = s.task("BaselineUpload", {"form": "twins", "fileId": file_id, "keyColumn": "id"})
    code = s.run_inline(db_url, task)
    assert_failed_before_writing(db, task, code, "'Name' and 'name '", "rename one")


def test_file_of_blank_lines_has_no_header(db, db_url, people):
    code, task = upload(db_url, b"\n\n \n")
    assert_failed_before_writing(db, task, code, "no header")


def test_blank_lines_and_empty_rows_are_skipped(db, db_url, people):
    text = "id,name\n\nA1,Asha\n,,\n\nA2,Binta\n"
    code, task = upload(db_url, text.encode())
    assert code == constants.EXIT_DONE
    assert set(loaded(db)) == {"A1", "A2"}
    assert s.record(db, task.uid)["row_errors"] == 0


def test_duplicate_header_names_are_refused(db, db_url, people):
    code, task = upload(db_url, b"id,name,Name \nA1,a,b\n")
    assert_failed_before_writing(db, task, code, "columns 2 and 3", "same name")


def test_real_file_with_two_block_name_columns_is_refused(db, db_url, real_data):
    org = s.create_org(db)
    s.create_form(db, org, "blocks", [("Block Name", "text", True)])
    file_id = s.store_bytes(db_url, (real_data / "blocks.csv").read_bytes())
    task = s.task("BaselineUpload", {"form": "blocks", "fileId": file_id,
                                     "keyColumn": "Block Code"})
    code = s.run_inline(db_url, task)
    assert_failed_before_writing(db, task, code, "columns 8 and 9", "Block Name")


def test_unnamed_column_in_the_middle_is_refused(db, db_url, people):
    code, task = upload(db_url, b"id,,name\nA1,x,Asha\n")
    assert_failed_before_writing(db, task, code, "column 2 has no name")


def test_trailing_empty_columns_from_spreadsheets_are_accepted(db, db_url, people):
    code, _task = upload(db_url, b"id,name,,\nA1,Asha,,\nA2,Binta,\n")
    assert code == constants.EXIT_DONE
    assert set(loaded(db)) == {"A1", "A2"}


def test_unknown_column_is_refused_naming_it(db, db_url, people):
    code, task = upload(db_url, b"id,name,shoe size\nA1,Asha,38\n")
    assert_failed_before_writing(db, task, code, "'shoe size'", "not in form")


def test_missing_required_column_is_refused(db, db_url, people):
    code, task = upload(db_url, b"id,age\nA1,31\n")
    assert_failed_before_writing(db, task, code, "required", "'name'")


def test_missing_key_column_is_refused(db, db_url, people):
    code, task = upload(db_url, b"external,name\nA1,Asha\n")
    assert_failed_before_writing(db, task, code, "key column 'id' is missing")


def test_bad_values_become_row_errors_with_line_and_column(db, db_url, people):
    text = ("id,name,age,joined\n"
            "A1,Asha,31,2019-07-16\n"
            "A2,Binta,twelve,2019-07-16\n"
            "A3,,40,2019-07-16\n"
            "A4,Chen,22,2019-02-30\n"
            ",Dara,22,2019-02-03\n")
    code, task = upload(db_url, text.encode())
    assert code == constants.EXIT_DONE
    assert set(loaded(db)) == {"A1"}
    errors = s.row_errors(db, task.uid)
    assert [(line, col) for line, col, _ in errors] == [
        (3, "age"), (4, "name"), (5, "joined"), (6, "id")]
    assert s.record(db, task.uid)["row_errors"] == 4


def test_ragged_rows_are_row_errors(db, db_url, people):
    text = "id,name,age\nA1,Asha\nA2,Binta,3,extra\nA3,Chen,5\n"
    code, task = upload(db_url, text.encode())
    assert code == constants.EXIT_DONE
    assert set(loaded(db)) == {"A3"}
    reasons = [r for _l, _c, r in s.row_errors(db, task.uid)]
    assert reasons == ["row has 2 fields but the header has 3",
                       "row has 4 fields but the header has 3"]


def test_duplicate_keys_first_wins_inside_and_across_chunks(db, db_url, people):
    rows = [f"K{i % 150},n{i}" for i in range(300)]  # every key twice, 150 rows apart
    settings = RunnerSettings(chunk_initial_rows=50, chunk_min_rows=50, chunk_max_rows=50)
    file_id = s.store_bytes(db_url, ("id,name\n" + "\n".join(rows) + "\n").encode())
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"})
    assert s.run_inline(db_url, task, settings=settings) == constants.EXIT_DONE
    data = loaded(db)
    assert len(data) == 150
    assert data["K7"]["name"] == "n7", "the first occurrence wins"
    errors = s.row_errors(db, task.uid)
    assert len(errors) == 150
    assert all("duplicate external id" in reason for _l, _c, reason in errors)
    assert errors[0][0] == 152, "line of the first repeat (header is line 1)"


def test_oversized_field_is_a_row_error_and_memory_stays_bounded(db, db_url, people):
    settings = RunnerSettings(max_field_chars=1024, max_record_chars=4096)
    huge = "x" * 3000
    text = f'id,name\nA1,Asha\nA2,"{huge}"\nA3,{"y" * 10_000}\nA4,Dara\n'
    file_id = s.store_bytes(db_url, text.encode())
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"})
    assert s.run_inline(db_url, task, settings=settings) == constants.EXIT_DONE
    assert set(loaded(db)) == {"A1", "A4"}
    reasons = {line: r for line, _c, r in s.row_errors(db, task.uid)}
    assert "longer than the limit of 1024 characters" in reasons[3]
    assert "longer than the limit of 4096 bytes" in reasons[4]


def test_unclosed_quote_at_end_of_file_is_a_row_error(db, db_url, people):
    code, task = upload(db_url, b'id,name\nA1,Asha\nA2,"Binta\n')
    assert code == constants.EXIT_DONE
    assert set(loaded(db)) == {"A1"}
    assert [line for line, _c, _r in s.row_errors(db, task.uid)] == [3]


def test_too_many_bad_rows_fail_the_task(db, db_url, people):
    text = "id,name,age\n" + "".join(f"A{i},n,notanumber\n" for i in range(30))
    code, task = upload(db_url, text.encode(), maxRowErrors=10)
    assert code == constants.EXIT_FAILED
    rec = s.record(db, task.uid)
    assert rec["run_status"] == "failed"
    assert "more than the 10" in rec["message"]


def test_file_over_the_size_limit_is_refused_and_not_kept(db, db_url):
    conn = s.connect(db_url)
    try:
        with pytest.raises(FileUnreadable, match="larger than the limit"):
            filestore.store(conn, s.io.BytesIO(b"x" * 5000), organization="acme",
                            filename="big.csv", max_bytes=4096, block_size=1024)
    finally:
        conn.close()
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM longtask.files")
        assert cur.fetchone()[0] == 0


def test_file_of_another_organization_is_not_found(db, db_url, people):
    file_id = s.store_bytes(db_url, GOOD.encode(), organization="other")
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"})
    code = s.run_inline(db_url, task)
    assert_failed_before_writing(db, task, code, "no file")


def test_invalid_params_fail_with_the_field_path(db, db_url, people):
    task = s.task("BaselineUpload", {"form": "people", "fileId": "not-a-uuid"})
    assert s.run_inline(db_url, task) == constants.EXIT_FAILED
    assert "fileId" in s.record(db, task.uid)["message"]
