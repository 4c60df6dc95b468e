"""The file store tells a spreadsheet's legacy encoding, or refuses to guess: real server.

Each file is what a spreadsheet of its locale writes (Excel's "CSV" in the ANSI code page
of the system's locale, "Unicode Text" as UTF-16); its bytes go through the store, and
the runner loads it, so the text that arrives in the baseline is the text written.
"""

from __future__ import annotations

import codecs
import io

import pytest
import runner_support as s
from longtask.runner.errors import FileUnreadable
from spreadsheets import SPREADSHEETS, THREE_LINES_CP1252

from longtask import constants, filestore
from longtask.textencoding import CONFIDENCE_THRESHOLD, EncodingUncertain

WIDE = {
    "utf-16 with a byte-order mark": (
        lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"), "byte-order-mark"),
    "utf-16-be with a byte-order mark": (
        lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"), "byte-order-mark"),
    "utf-16-le without one": (lambda t: t.encode("utf-16-le"), "utf-16-pattern"),
}


@pytest.fixture
def places(db):  # type: ignore[no-untyped-def]
    org = s.create_org(db)
    s.create_form(db, org, "places", [("name", "text", True), ("ort", "text", False),
                                       ("stadt", "text", False)])
    return org


def store(db_url: str, data: bytes, encoding: str | None = None) -> filestore.FileInfo:
    conn = s.connect(db_url)
    try:
        return filestore.store(conn, io.BytesIO(data), organization="acme",
                               filename="kunden.csv", encoding=encoding)
    finally:
        conn.close()


def stored_text(db, info: filestore.FileInfo) -> str:  # type: ignore[no-untyped-def]
    return b"".join(filestore.read_blocks(db, info)).decode(info.encoding)


def load(db_url: str, info: filestore.FileInfo) -> s.TaskDefinition:
    task = s.task("BaselineUpload", {"form": "places", "fileId": info.id, "keyColumn": "id"})
    assert s.run_inline(db_url, task) == constants.EXIT_DONE
    return task


def loaded(db) -> dict[str, dict[str, object]]:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute("SELECT external_id, data FROM collect.baseline_records")
        return dict(cur.fetchall())


def files_kept(db) -> int:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM longtask.files")
        return int(cur.fetchone()[0])


def test_the_three_line_cp1252_german_file_is_stored_as_windows_1252(db, db_url, places):
    info = store(db_url, THREE_LINES_CP1252.encode("cp1252"))

    assert info.encoding == "cp1252"
    facts = info.encoding_facts
    assert facts.source == "detected"
    assert facts.confidence is not None and facts.confidence >= CONFIDENCE_THRESHOLD
    assert stored_text(db, info) == THREE_LINES_CP1252
    load(db_url, info)
    assert loaded(db) == {"1": {"name": "Köln", "stadt": "Nordrhein-Westfalen"},
                          "2": {"name": "München", "stadt": "Bayern"}}


@pytest.mark.parametrize("name", SPREADSHEETS)
def test_each_spreadsheet_encoding_is_detected_and_loaded_as_written(db, db_url, places, name):
    encoding, text = SPREADSHEETS[name]
    info = store(db_url, text.encode(encoding))

    assert codecs.lookup(info.encoding).name == codecs.lookup(encoding).name, info
    assert info.encoding_facts.source == "detected"
    assert info.source_encoding.startswith(f"{info.encoding} (detected, confidence ")
    assert stored_text(db, info) == text
    load(db_url, info)
    rows = [line.split(",") for line in text.splitlines()[1:]]
    assert loaded(db) == {key: {"name": who, "ort": where} for key, who, where in rows}


@pytest.mark.parametrize("name", WIDE)
def test_utf16_is_transcoded_to_utf8_with_or_without_a_byte_order_mark(db, db_url, places,
                                                                      name):
    encode, source = WIDE[name]
    text = SPREADSHEETS["cp1251 (Russian)"][1]
    info = store(db_url, encode(text))

    assert (info.encoding, info.encoding_facts.source) == ("utf-8", source)
    assert info.source_encoding.endswith("stored as utf-8)")
    assert b"".join(filestore.read_blocks(db, info)) == text.encode("utf-8")
    load(db_url, info)
    assert loaded(db)["1"] == {"name": "Иванов Сергей", "ort": "Москва"}


# One accented letter: "Città" as cp1252, "Cittŕ" as cp1250, "Cittą" as cp1257.
TOO_LITTLE = "Nome;Cognome;Città;Note\r\n".encode("cp1252")


def test_a_guess_below_the_threshold_is_refused_saying_how_to_save_as_csv_utf8(db, db_url):
    with pytest.raises(EncodingUncertain) as refused:
        store(db_url, TOO_LITTLE)

    message = str(refused.value)
    assert "kunden.csv" in message and "for sure" in message
    assert "CSV UTF-8" in message and "name the encoding" in message
    readings = {r.codec: r.samples[0] for r in refused.value.readings}
    assert readings["cp1252"] == "Nome;Cognome;Città;Note", readings
    assert len(readings) > 1, "the other likely readings are shown too"
    assert files_kept(db) == 0


def test_naming_the_encoding_stores_a_file_detection_is_not_sure_of(db, db_url):
    info = store(db_url, TOO_LITTLE, encoding="windows-1252")

    assert (info.encoding, info.source_encoding) == ("cp1252", "cp1252 (named)")
    assert info.encoding_facts.source == "named" and info.encoding_facts.confidence is None
    assert stored_text(db, info) == "Nome;Cognome;Città;Note\r\n"


def test_bytes_the_named_encoding_has_no_character_for_are_refused_with_line_and_byte(
        db, db_url):
    data = b"id,name\r\n1,Asha\r\n2,B\x81nta\r\n"  # 0x81 is undefined in cp1252

    with pytest.raises(FileUnreadable, match=r"kunden.csv, line 3 \(byte 20\).*not valid cp1252"):
        store(db_url, data, encoding="cp1252")
    assert files_kept(db) == 0


def test_a_utf8_file_named_as_a_code_page_is_refused(db, db_url):
    with pytest.raises(FileUnreadable, match=r"valid UTF-8.*without naming an encoding"):
        store(db_url, "id,name\n1,Köln\n".encode(), encoding="cp1252")
    assert files_kept(db) == 0


@pytest.mark.parametrize("name", ["utf-7", "no-such-encoding", "cp037"])
def test_an_encoding_whose_ascii_is_not_ascii_or_unknown_is_refused(db_url, name):
    with pytest.raises(FileUnreadable, match=repr(name)):
        store(db_url, b"id,name\n1,x\n", encoding=name)


def test_a_file_of_utf8_lines_and_cp1252_lines_is_refused_as_mixed(db, db_url):
    data = ("id,name\r\n" + "".join(f"{i},Köln\r\n" for i in range(1, 31))).encode()
    data += "31,Düsseldorf\r\n".encode("cp1252")

    first_bad = data.index(b"\xfc")  # ü in cp1252; no UTF-8 byte before it is 0xFC

    with pytest.raises(EncodingUncertain, match=rf"mixes encodings: 30 lines are UTF-8 but "
                                                rf"line 32 \(byte {first_bad}\) is not"):
        store(db_url, data)
    assert files_kept(db) == 0


def test_binary_data_is_refused_as_no_text(db, db_url):
    with pytest.raises(EncodingUncertain, match="no code page a spreadsheet writes reads it"):
        store(db_url, bytes(range(256)) * 64)
    assert files_kept(db) == 0
