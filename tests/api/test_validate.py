"""POST /v1/tasks/validate: the dry run on real files, catching what would go wrong."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import httpx
import psycopg2.extensions
import pytest
import runner_support
from api_support import problem, upload
from longtask.api.settings import ApiSettings

from devcluster import seed

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

KARNATAKA = "29-karnataka-constituency.csv"
# The village baseline's columns and the types a Collect form would give them: census
# codes keep their leading zeros, so they are text.
VILLAGE_FIELDS = [
    ("Assembly Constituency Code", "integer"), ("Assembly Constituency ECI Code", "integer"),
    ("Assembly Constituency Name", "text"), ("Block Code", "integer"), ("Block Name", "text"),
    ("District Census 2011 Code", "text"), ("District Code", "integer"),
    ("District Name", "text"), ("Localbody Code", "integer"), ("Localbody Name", "text"),
    ("Parliament Constituency code", "integer"), ("Parliament Constituency ECI Code", "integer"),
    ("Parliament Constituency Name", "text"), ("State Name", "text"),
    ("Subdistrict Census 2011 Code", "text"), ("Subdistrict Code", "integer"),
    ("Subdistrict Name", "text"), ("Village Census 2011 Code", "text"),
    ("Village Code", "text"), ("Village Name", "text"),
]


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    """The real files are a few MB: a limit that takes them."""
    return api_settings.model_copy(update={"max_upload_bytes": 8 << 20})


@pytest.fixture
def villages(db: psycopg2.extensions.connection, seeded: dict[str, int]) -> int:
    return runner_support.create_form(db, seeded["acme"], "Villages",
                                      [(name, type_, False) for name, type_ in VILLAGE_FIELDS])


def swap_header(data: bytes, a: str, b: str) -> bytes:
    """The file with the header labels of columns ``a`` and ``b`` exchanged: the data of
    each now sits under the other's name, as when a user swapped two columns."""
    header, _, rest = data.partition(b"\n")
    names = header.decode().split(",")
    i, j = names.index(a), names.index(b)
    names[i], names[j] = names[j], names[i]
    return ",".join(names).encode() + b"\n" + rest


def village_request(file_id: str) -> dict[str, Any]:
    return {"type": "BaselineUpload", "organization": "acme",
            "params": {"form": "Villages", "fileId": file_id, "keyColumn": "Village Code"}}


def validate(client: httpx.Client, request: dict[str, Any], **params: Any) -> dict[str, Any]:
    response = client.post("/v1/tasks/validate", json=request, params=params)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def test_a_real_village_file_maps_cleanly(real_data: Path, operator: httpx.Client,
                                          villages: int) -> None:
    file_id = upload(operator, (real_data / KARNATAKA).read_bytes(), KARNATAKA).json()["id"]

    report = validate(operator, village_request(file_id))

    assert report["valid"] is True, report["errors"]
    assert report["rowsTotal"] == 14859
    assert report["rowsRead"] == 200
    assert report["rowErrors"] == [] and report["warnings"] == []
    by_header = {c["header"]: c for c in report["columns"]}
    assert by_header["District Code"]["type"] == "integer"
    assert by_header["Village Code"]["target"] == "Village Code (key)"
    assert by_header["District Name"]["samples"][0] == "RAICHUR"


def test_swapped_columns_in_a_real_file_are_flagged_before_the_run(
        real_data: Path, operator: httpx.Client, villages: int,
        custom_objects: Any, api_namespace: str) -> None:
    data = swap_header((real_data / KARNATAKA).read_bytes(), "District Code", "District Name")
    file_id = upload(operator, data, KARNATAKA).json()["id"]

    report = validate(operator, village_request(file_id), rows=100)

    swapped = [w for w in report["warnings"] if w["code"] == "columns-swapped"]
    assert len(swapped) == 1, report["warnings"]
    assert sorted(swapped[0]["columns"]) == ["District Code", "District Name"]
    assert report["rowsRead"] == 100
    assert len(report["rowErrors"]) == 100, "every row's district code is a name"
    assert {e["column"] for e in report["rowErrors"]} == {"District Code"}
    assert report["rowErrors"][0]["line"] == 2
    codes = next(c for c in report["columns"] if c["header"] == "District Code")
    assert codes["invalid"] == codes["values"] == 100
    assert custom_objects.list_namespaced_custom_object(
        "collect.atlan.com", "v1alpha1", api_namespace, "longtasks")["items"] == [], (
        "a dry run creates nothing")


def epraccur_slice(real_data: Path, rows: int = 300) -> list[list[str]]:
    with (real_data / "epraccur.csv").open(newline="") as f:
        return [row for _, row in zip(range(rows), csv.reader(f), strict=False)]


def as_csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def teams_request(file_id: str, team: str, manager: str) -> dict[str, Any]:
    return {"type": "BulkTeamCreate", "organization": "acme",
            "params": {"fileId": file_id, "hasHeader": False, "defaultRegion": "GB",
                       "teamColumn": team, "managerPhoneColumn": manager,
                       "memberPhonesColumn": None}}


def test_team_and_phone_columns_given_the_wrong_way_round_are_flagged(
        real_data: Path, operator: httpx.Client) -> None:
    file_id = upload(operator, as_csv(epraccur_slice(real_data))).json()["id"]

    right = validate(operator, teams_request(file_id, "#2", "#18"))
    wrong = validate(operator, teams_request(file_id, "#18", "#2"))

    assert right["warnings"] == [], right["warnings"]
    assert [w["code"] for w in wrong["warnings"]] == ["columns-swapped", "no-rows-written"], (
        wrong["warnings"])
    assert sorted(wrong["warnings"][0]["columns"]) == ["#18", "#2"]
    assert all(e["column"] == "#2" for e in wrong["rowErrors"])


def test_a_phone_column_shifted_by_ten_rows_shows_as_rows_without_a_valid_phone(
        real_data: Path, operator: httpx.Client) -> None:
    rows = epraccur_slice(real_data)
    phones = [r[17] for r in rows]
    shifted = [[*r[:17], p, *r[18:]] for r, p in zip(rows, [""] * 10 + phones, strict=False)]
    file_id = upload(operator, as_csv(shifted)).json()["id"]

    report = validate(operator, teams_request(file_id, "#2", "#18"))

    first_lines = sorted({e["line"] for e in report["rowErrors"]})[:10]
    assert first_lines == list(range(1, 11)), report["rowErrors"][:12]
    assert all(e["column"] == "#18" for e in report["rowErrors"][:10])


def test_a_header_the_run_would_refuse_makes_the_request_invalid(
        real_data: Path, operator: httpx.Client) -> None:
    file_id = upload(operator, (real_data / "blocks.csv").read_bytes()).json()["id"]

    report = validate(operator, {"type": "BaselineUpload", "organization": "acme",
                                 "params": {"form": "Households", "fileId": file_id}})

    assert report["valid"] is False
    assert report["errors"][0]["pointer"] == "#/params/fileId"
    assert "Block Name" in report["errors"][0]["detail"]


def test_params_errors_are_reported_with_their_paths(operator: httpx.Client) -> None:
    report = validate(operator, {"type": "Export", "organization": "acme",
                                 "params": {"form": "Households", "from": "2019-01-01",
                                            "to": "2018-01-01", "timeZone": "Mars/Olympus"}})

    assert report["valid"] is False
    assert "#/params/timeZone" in {e["pointer"] for e in report["errors"]}


def test_a_file_of_another_organization_is_not_found_for_the_dry_run(
        operator: httpx.Client, other: httpx.Client) -> None:
    theirs = upload(other, b"head_name\nAwa\n", organization="globex").json()["id"]

    report = validate(operator, {"type": "BaselineUpload", "organization": "acme",
                                 "params": {"form": "Households", "fileId": theirs}})

    assert report["valid"] is False
    assert report["errors"][0]["pointer"] == "#/params/fileId"


def test_a_dry_run_for_an_organization_the_token_does_not_hold_is_403(
        viewer: httpx.Client) -> None:
    problem(viewer.post("/v1/tasks/validate", json={
        "type": "Export", "organization": "globex",
        "params": {"form": "Households", "from": "2017-08-01", "to": "2017-08-31"}}), 403)


def test_an_export_dry_run_counts_the_rows_the_range_covers(
        viewer: httpx.Client, db: psycopg2.extensions.connection,
        seeded: dict[str, int]) -> None:
    form = seed.submission_form(db, seeded["acme"])
    seed.submissions(db, seeded["acme"], form, 1000, dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
                     dt.datetime(2019, 1, 1, tzinfo=dt.UTC))

    def rows(since: str) -> int:
        report = validate(viewer, {"type": "Export", "organization": "acme", "params": {
            "form": "household-survey", "from": since, "to": "2018-12-31"}})
        assert report["valid"], report["errors"]
        total: int = report["rowsTotal"]
        return total

    wrong, right = rows("2015-08-01"), rows("2017-08-01")

    assert right < wrong < 1000
    assert abs(wrong / right - 3.4 / 1.4) < 0.1, (wrong, right)


def test_a_delete_dry_run_says_how_many_would_go_and_refuses_past_max_rows(
        viewer: httpx.Client, db: psycopg2.extensions.connection,
        seeded: dict[str, int]) -> None:
    form = seed.submission_form(db, seeded["acme"])
    seed.submissions(db, seeded["acme"], form, 900, dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
                     dt.datetime(2018, 1, 1, tzinfo=dt.UTC))
    params = {"form": "household-survey", "from": "2016-01-01", "to": "2016-12-31",
              "where": {"household_size": "4"}}
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.submissions WHERE submitted_at >= "
                    "'2016-01-01Z' AND submitted_at < '2017-01-01Z' "
                    "AND data->>'household_size' = '4'")
        expected = cur.fetchone()[0]
    db.commit()

    report = validate(viewer, {"type": "BulkSubmissionDelete", "organization": "acme",
                               "params": params})
    assert report["valid"] and report["rowsTotal"] == expected > 0, report
    warning = next(w for w in report["warnings"] if w["code"] == "deletes-rows")
    assert f"{expected:,} submissions match" in warning["detail"], warning

    guarded = validate(viewer, {"type": "BulkSubmissionDelete", "organization": "acme",
                                "params": {**params, "maxRows": expected - 1}})
    assert not guarded["valid"], guarded
    assert "more than maxRows" in guarded["errors"][0]["detail"], guarded["errors"]
    unknown = validate(viewer, {"type": "BulkSubmissionDelete", "organization": "acme",
                                "params": {**params, "where": {"village_name": "x"}}})
    assert not unknown["valid"] and "'village_name'" in unknown["errors"][0]["detail"]


def test_a_teams_file_without_a_member_column_is_valid_with_the_defaults(
        operator: httpx.Client) -> None:
    file_id = upload(operator, b"team,manager_phone\nNorth,9876543210\n").json()["id"]
    request = {"type": "BulkTeamCreate", "organization": "acme", "params": {"fileId": file_id}}

    report = validate(operator, request)
    named = operator.post("/v1/tasks/validate", json={
        **request, "params": {"fileId": file_id, "memberPhonesColumn": "member_phones"}}).json()

    assert report["valid"] is True and report["errors"] == [], report
    assert named["valid"] is False
    assert "no column named 'member_phones' for the member phones" in str(named["errors"])
