"""Row errors for an over-long field or line, or a quote left open, name their column;
where no column can be told from the bytes, the reason gives the byte offset instead."""

from __future__ import annotations

from collections.abc import Iterator

import runner_support as s

from longtask import constants
from longtask.csvsource import CsvFile
from longtask.settings import RunnerSettings


def errors(data: bytes, *, block: int = 7, has_header: bool = True, field: int = 20,
           line: int = 64) -> list[tuple[int, str | None, str | None]]:
    """(line, column, reason) of the records the reader could not read."""
    def source(offset: int) -> Iterator[bytes]:
        for at in range(offset, len(data), block):
            yield data[at:at + block]

    f = CsvFile(source, encoding="utf-8", head=data, has_header=has_header,
                max_field_chars=field, max_line_bytes=line, filename="t.csv")
    header = f.header()
    width = len(header.names) if has_header else None
    return [(r.line, r.column, r.error) for r in f.records(header.end, width) if r.error]


def test_a_field_over_the_limit_names_its_column_whether_quoted_or_not() -> None:
    data = (b"id,name,note\n1,Asha,ok\n2,\"" + b"x" * 30 + b"\",ok\n3,Binta," + b"y" * 30
            + b"\n")

    assert errors(data) == [(3, "name", "a field is longer than the limit of 20 characters"),
                            (4, "note", "a field is longer than the limit of 20 characters")]


def test_a_field_over_the_limit_across_line_breaks_names_its_column() -> None:
    data = b'id,name,note\n1,Asha,"first line\nsecond line\nthird"\n2,Binta,ok\n'

    got = errors(data, block=3)
    assert got[0] == (2, "note", "a field is longer than the limit of 20 characters")


def test_an_overlong_line_names_the_column_it_crosses_the_limit_in() -> None:
    data = b"id,name,note\n1,Asha," + b"z" * 100 + b"\n2,Binta,ok\n"

    for block in (5, 16, 1 << 20):  # skipped a block at a time, or cut from one
        assert errors(data, block=block, field=200) == [
            (2, "note", "line is longer than the limit of 64 bytes")]


def test_an_overlong_line_with_a_quote_before_the_limit_gives_its_byte_offset() -> None:
    data = b'id,name,note\n1,"Asha, A.",' + b"z" * 100 + b"\n"

    assert errors(data, field=200) == [
        (2, None, "line is longer than the limit of 64 bytes (it starts at byte 13)")]


def test_an_overlong_line_inside_a_quoted_field_gives_its_byte_offset() -> None:
    data = b'id,name,note\n1,Asha,"short\n' + b"z" * 100 + b'"\n2,Binta,ok\n'

    got = errors(data, field=200)
    assert got[0] == (2, None, "line is longer than the limit of 64 bytes (it starts at byte 27)")


def test_a_quote_left_open_names_the_field_it_opens() -> None:
    data = b'id,name,note\n1,Asha,ok\n2,"Binta,ok\n'

    assert errors(data, field=200) == [
        (3, "name", "a quoted field is not closed before the end of the file")]


def test_without_a_header_the_column_is_its_position() -> None:
    data = b"1,Asha,ok\n2,Binta," + b"y" * 30 + b"\n"

    assert errors(data, has_header=False) == [
        (2, "#3", "a field is longer than the limit of 20 characters")]


def test_the_runner_stores_the_column_of_overlong_fields_and_lines(db, db_url) -> None:  # type: ignore[no-untyped-def]
    org = s.create_org(db)
    s.create_form(db, org, "people", [("name", "text", True), ("city", "text", False)])
    text = (f'id,name,city\nA1,Asha,Dakar\nA2,"{"x" * 3000}",Thiès\n'
            f'A3,Dara,{"y" * 10_000}\nA4,"Binta\n')
    file_id = s.store_bytes(db_url, text.encode())
    task = s.task("BaselineUpload", {"form": "people", "fileId": file_id, "keyColumn": "id"})

    settings = RunnerSettings(max_field_chars=1024, max_record_chars=4096)
    assert s.run_inline(db_url, task, settings=settings) == constants.EXIT_DONE

    assert s.row_errors(db, task.uid) == [
        (3, "name", "a field is longer than the limit of 1024 characters"),
        (4, "city", "line is longer than the limit of 4096 bytes"),
        (5, "name", "a quoted field is not closed before the end of the file"),
    ]
