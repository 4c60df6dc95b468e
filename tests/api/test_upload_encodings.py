"""Uploads in a spreadsheet's legacy encoding, over real HTTP: the encoding is reported with
its confidence and decoded lines, a guess the store is not sure of is refused with how to
save as CSV UTF-8, and the uploader may name the encoding instead."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg2.extensions
import pytest
import runner_support
from api_support import problem, upload
from spreadsheets import SPREADSHEETS, THREE_LINES_CP1252

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

TOO_LITTLE = "Nome;Cognome;Città;Note\r\n".encode("cp1252")  # cp1252? cp1250? cp1257?


@pytest.fixture
def api_namespace() -> str:
    """Uploads and dry runs make no LongTask: the default namespace saves making one."""
    return "default"


@pytest.fixture
def orte(db: psycopg2.extensions.connection, seeded: dict[str, int]) -> int:
    return runner_support.create_form(db, seeded["acme"], "Orte",
                                      [("name", "text", True), ("stadt", "text", False)])


def stored_files(db: psycopg2.extensions.connection) -> int:
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM longtask.files")
        return int(cur.fetchone()[0])  # type: ignore[index]


def test_the_three_line_cp1252_file_is_reported_with_its_confidence_and_lines(
        operator: httpx.Client) -> None:
    response = upload(operator, THREE_LINES_CP1252.encode("cp1252"), "orte.csv")

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["encoding"], body["encodingSource"]) == ("cp1252", "detected")
    assert body["encodingLabel"] == "Windows-1252 (Western European)"
    assert body["encodingConfidence"] >= 0.9
    confidence = body["encodingConfidence"]
    assert body["sourceEncoding"] == f"cp1252 (detected, confidence {confidence:.2f})"
    assert body["decodedSamples"] == ["1,Köln,Nordrhein-Westfalen", "2,München,Bayern"]
    assert operator.get(f"/v1/files/{body['id']}").json() == body


def test_the_dry_run_names_a_detected_encoding_and_shows_the_decoded_values(
        operator: httpx.Client, orte: int) -> None:
    file_id = upload(operator, THREE_LINES_CP1252.encode("cp1252"), "orte.csv").json()["id"]

    report = operator.post("/v1/tasks/validate", json={
        "type": "BaselineUpload", "organization": "acme",
        "params": {"form": "Orte", "fileId": file_id, "keyColumn": "id"}}).json()

    assert report["valid"] is True, report["errors"]
    assert report["file"]["encodingConfidence"] >= 0.9
    [detected] = [w for w in report["warnings"] if w["code"] == "encoding-detected"]
    assert "Windows-1252 (Western European)" in detected["detail"]
    assert "confidence" in detected["detail"] and "Köln" in detected["detail"]
    names = next(c for c in report["columns"] if c["header"] == "name")
    assert names["samples"] == ["Köln", "München"]


@pytest.mark.parametrize("name", SPREADSHEETS)
def test_each_spreadsheet_encoding_is_reported_as_detected(operator: httpx.Client,
                                                           name: str) -> None:
    encoding, text = SPREADSHEETS[name]

    body = upload(operator, text.encode(encoding), "kunden.csv").json()

    assert body["encodingSource"] == "detected", body
    assert body["encodingConfidence"] >= 0.9
    assert body["decodedSamples"] == text.splitlines()[1:]
    assert body["header"] == ["id", "name", "ort"]


def test_utf16_without_a_byte_order_mark_is_stored_as_utf8(operator: httpx.Client) -> None:
    text = SPREADSHEETS["gb18030 (Chinese)"][1]

    body = upload(operator, text.encode("utf-16-le")).json()

    assert (body["encoding"], body["encodingSource"]) == ("utf-8", "utf-16-pattern")
    assert body["sourceEncoding"] == "utf-16-le (no byte-order mark, stored as utf-8)"
    assert body["encodingConfidence"] == 1.0


def test_a_guess_below_the_threshold_is_refused_with_the_readings_and_the_ways_out(
        operator: httpx.Client, db: psycopg2.extensions.connection) -> None:
    body = problem(upload(operator, TOO_LITTLE), 422)

    assert body["type"].endswith("/encoding-uncertain")
    assert "CSV UTF-8" in body["detail"] and "name the encoding" in body["detail"]
    assert {(e.get("field"), e.get("parameter")) for e in body["errors"]} == {
        ("file", None), ("encoding", "encoding")}
    candidates: list[dict[str, Any]] = body["encodingCandidates"]
    assert candidates[0] == {"encoding": "cp1252", "label": "Windows-1252 (Western European)",
                             "samples": ["Nome;Cognome;Città;Note"]}
    assert len(candidates) > 1
    assert stored_files(db) == 0


def test_naming_the_encoding_at_upload_stores_the_file(operator: httpx.Client) -> None:
    body = upload(operator, TOO_LITTLE, encoding="cp1252").json()

    assert (body["encoding"], body["encodingSource"]) == ("cp1252", "named")
    assert body["encodingConfidence"] is None
    assert body["decodedSamples"] == ["Nome;Cognome;Città;Note"]


def test_an_unknown_encoding_named_is_422_pointing_at_the_parameter(
        operator: httpx.Client, db: psycopg2.extensions.connection) -> None:
    body = problem(upload(operator, TOO_LITTLE, encoding="klingon"), 422)

    assert body["errors"] == [{"detail": body["detail"], "field": "encoding",
                               "parameter": "encoding"}]
    assert "'klingon'" in body["detail"]
    assert stored_files(db) == 0


def test_bytes_the_named_encoding_cannot_decode_are_422_with_line_and_byte(
        operator: httpx.Client, db: psycopg2.extensions.connection) -> None:
    body = problem(upload(operator, b"id,name\r\n1,B\x81nta\r\n", encoding="cp1252"), 422)

    assert "line 2 (byte 12)" in body["detail"]
    assert body["errors"][0]["field"] == "file"
    assert stored_files(db) == 0
