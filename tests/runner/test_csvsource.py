"""The CSV reader on its own: records, cursors and counts must not depend on how the bytes
are cut into blocks, and a resume from any record's cursor must read what a straight read
reads after it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from longtask.csvsource import CsvFile, Position, Record, detect_delimiter

MAX_LINE = 64


def csv_file(data: bytes, block: int, encoding: str = "utf-8", *,
             plain_split: bool = True, delimiter: str | None = None) -> CsvFile:
    def source(offset: int) -> Iterator[bytes]:
        for at in range(offset, len(data), block):
            yield data[at:at + block]

    return CsvFile(source, encoding=encoding, head=data[:1 << 20], max_field_chars=40,
                   max_line_bytes=MAX_LINE, filename="t.csv", plain_split=plain_split,
                   delimiter=delimiter)


def read_all(data: bytes, block: int, width: int | None = 3, *,
             plain_split: bool = True) -> list[Record]:
    f = csv_file(data, block, plain_split=plain_split)
    return list(f.records(f.header().end, width))


def fields(records: list[Record]) -> list[tuple[int, list[str] | None, str | None]]:
    return [(r.line, r.fields, r.error) for r in records]


# Pieces a file is made of: plain rows, quoted fields holding separators and line ends,
# blank lines, rows of empty cells (also of Unicode-only spaces), ragged rows, overlong
# lines, undecodable bytes, a field over the field limit, a line end inside an unquoted
# field, a NUL and an unclosed quote.
PIECES = [
    b"a,b,c\n", b"1,2,3\r\n", b'"x, y","line\none",z\n', b'"q""uote",,\n', b"\n", b",,\n",
    b"  , ,\n", b"only,two\n", b"1,2,3,,\n", b"1,2,3,4\n", b"d," + b"e" * 80 + b",f\n",
    b"ok,\xff\xfe,bad\n", b"g," + b"h" * 45 + b",i\n", b"\xc3\xa9t\xc3\xa9,\xe0\xa5\xa7,k\n",
    b"\xc2\xa0,\x1c,\t\n", b"x\ry,z,w\n", b"n\x00ul,2,3\n", b"4,5,6, \n", b"\r\n",
]


@st.composite
def files(draw: st.DrawFn) -> bytes:
    body = b"".join(draw(st.lists(st.sampled_from(PIECES), max_size=30)))
    if draw(st.booleans()):
        body += b'"never closed,1,2\n3,4'
    elif draw(st.booleans()):
        body = body.rstrip(b"\n")  # no line end after the last record
    return b"h1,h2,h3\n" + body


@settings(max_examples=150, deadline=None)
@given(data=files(), block=st.sampled_from([1, 2, 3, 7, 16, 61, 1 << 20]))
def test_block_size_changes_nothing(data: bytes, block: int) -> None:
    straight = read_all(data, 1 << 20)
    assert read_all(data, block) == straight


@settings(max_examples=200, deadline=None)
@given(data=files(), block=st.sampled_from([1, 7, 16, 61, 1 << 20]))
def test_splitting_plain_lines_at_commas_reads_what_csv_reads(data: bytes, block: int) -> None:
    assert read_all(data, block) == read_all(data, block, plain_split=False)


@settings(max_examples=150, deadline=None)
@given(data=files(), block=st.sampled_from([1, 5, 16, 1 << 20]))
def test_resume_from_any_cursor_reads_the_same_rest(data: bytes, block: int) -> None:
    f = csv_file(data, block)
    straight = list(f.records(f.header().end, 3))
    for i, record in enumerate(straight):
        cursor = Position.from_json(record.end.to_json())
        assert list(f.records(cursor, 3)) == straight[i + 1:]
    if straight:
        assert straight[-1].end.offset <= len(data)


@settings(max_examples=150, deadline=None)
@given(data=files(), block=st.sampled_from([1, 9, 1 << 20]))
def test_count_matches_the_records_read(data: bytes, block: int) -> None:
    f = csv_file(data, block)
    header = f.header()
    count = f.count(header.end)
    read = list(f.records(header.end, 3))
    documented_gaps = (b"\xff", b"\xc2\xa0", b"\x1c")  # undecodable; Unicode-only spaces
    if any(len(line) > MAX_LINE or any(g in line for g in documented_gaps)
           or b"\r" in line[:-1] for line in data.split(b"\n")):  # or a bare carriage return
        assert abs(count - len(read)) <= data.count(b"\n")  # documented: may differ
    else:
        assert count == len(read)


@settings(max_examples=150, deadline=None)
@given(data=files(), block=st.sampled_from([1, 7, 61, 1 << 20]),
       delimiter=st.sampled_from([b";", b"\t", b"|"]), plain_split=st.booleans())
def test_a_file_with_another_delimiter_reads_as_its_comma_twin(
        data: bytes, block: int, delimiter: bytes, plain_split: bool) -> None:
    """Every comma of a file made another delimiter: detected from the header, the same
    records, errors, cursors and count."""
    assume(delimiter not in data)
    twin = data.replace(b",", delimiter)
    f = csv_file(twin, block, plain_split=plain_split)
    header = f.header()

    assert (f.delimiter, f.delimiter_detected) == (delimiter.decode(), True)
    back = delimiter.decode()
    read = [dataclasses.replace(r, fields=None if r.fields is None
                                else [v.replace(back, ",") for v in r.fields])
            for r in f.records(header.end, 3)]
    assert read == read_all(data, block, plain_split=plain_split)
    comma = csv_file(data, block)
    assert f.count(header.end) == comma.count(comma.header().end)


@pytest.mark.parametrize(("first_line", "found"), [
    (b"a,b,c\n", ","),
    (b"a;b;c\r\n1;2;3\n", ";"),
    (b"a\tb\tc\n", "\t"),
    (b"a|b|c", "|"),
    (b"single\n", ","),
    (b"a;b,c\n", ","),  # a tie: the comma
    (b'"last, first";"city, country";age\n', ";"),  # commas inside quotes do not count
    (b"\xef\xbb\xbfid;name\n", ";"),  # after a UTF-8 BOM
    (b"", ","),
])
def test_the_delimiter_is_told_from_the_header_line(first_line: bytes, found: str) -> None:
    assert detect_delimiter(first_line) == found


def test_a_named_delimiter_overrides_detection_and_an_unknown_one_is_refused() -> None:
    data = b"a;b,c\n1;2,3\n"
    named = csv_file(data, 1 << 20, delimiter=";")

    assert (named.delimiter, named.delimiter_detected) == (";", False)
    assert [r.fields for r in named.records(named.header().end, 2)] == [["1", "2,3"]]
    with pytest.raises(ValueError, match="semicolon"):
        csv_file(data, 1 << 20, delimiter=":")


def test_a_semicolon_file_as_a_european_spreadsheet_saves_it() -> None:
    """Decimal commas, a quoted field holding the delimiter, a row of empty cells."""
    data = (b"Nom;Montant;Ville\r\n"
            b"Dupont;1 234,50;\"Lyon; 3e\"\r\n"
            b";;\r\n"
            b"Martin;12,00;Paris\r\n")
    f = csv_file(data, 1 << 20)

    assert f.header().names == ["Nom", "Montant", "Ville"]
    assert [(r.line, r.fields) for r in f.records(f.header().end, 3)] == [
        (2, ["Dupont", "1 234,50", "Lyon; 3e"]), (4, ["Martin", "12,00", "Paris"])]


def test_rows_keep_quotes_line_breaks_and_their_line_numbers() -> None:
    data = b'h1,h2,h3\r\n"x, y","two\r\nlines",z\r\n\r\n4,5,6\r\n'
    assert fields(read_all(data, 4)) == [
        (2, ["x, y", "two\r\nlines", "z"], None),
        (5, ["4", "5", "6"], None),
    ]


def test_bad_lines_are_row_errors_and_reading_goes_on() -> None:
    data = (b"h1,h2,h3\n1,2,3\n" + b"x" * 100 + b"\nok,\xff,bad\n" + b'a,"' + b"b" * 50
            + b'",c\nonly,two\n7,8,9,,\n7,8,9,10\n4,5,6')
    got = fields(read_all(data, 8))
    assert got == [
        (2, ["1", "2", "3"], None),
        (3, None, f"line is longer than the limit of {MAX_LINE} bytes"),
        (4, None, "bytes at column 4 are not valid utf-8"),
        (5, None, "a field is longer than the limit of 40 characters"),
        (6, None, "row has 2 fields but the header has 3"),
        (7, ["7", "8", "9"], None),
        (8, None, "row has 4 fields but the header has 3"),
        (9, ["4", "5", "6"], None),
    ]


def test_overlong_line_spanning_many_blocks_is_skipped_in_bounded_memory() -> None:
    data = b"h1,h2,h3\n" + b"y" * 10_000 + b"\n1,2,3\n"
    assert fields(read_all(data, 16)) == [
        (2, None, f"line is longer than the limit of {MAX_LINE} bytes"),
        (3, ["1", "2", "3"], None),
    ]


def test_unclosed_quote_at_the_end_is_one_row_error() -> None:
    got = fields(read_all(b'h1,h2,h3\n1,2,3\n"open,4,5\n6,7\n', 5))
    assert got == [(2, ["1", "2", "3"], None),
                   (3, None, "a quoted field is not closed before the end of the file")]


def test_old_mac_line_ends() -> None:
    data = b"h1,h2,h3\r1,2,3\r\r4,5,6"
    f = csv_file(data, 3)
    assert f.separator == b"\r"
    assert fields(list(f.records(f.header().end, 3))) == [
        (2, ["1", "2", "3"], None), (4, ["4", "5", "6"], None)]
    assert f.count(f.header().end) == 2


@pytest.mark.parametrize("size", [1, 2, 5, 512])
def test_batches_cover_every_record_once(size: int) -> None:
    data = b"h1,h2,h3\n" + b"".join(b"%d,x,y\n" % i for i in range(23))
    f = csv_file(data, 10)
    batches = list(f.batches(f.header().end, 3, size=size))
    assert all(0 < len(b) <= size for b in batches)
    records = [b.record(i) for b in batches for i in range(len(b))]
    assert [r.fields[0] for r in records if r.fields] == [str(i) for i in range(23)]
    assert [r.end.record for r in records] == list(range(1, 24))
