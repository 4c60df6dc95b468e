"""The preflight of POST /v1/tasks/validate: a request compared with what its organization
already has, on the demo's own files (data/real), through the real API and its own
database role; another organization's data never counts and never shows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg2.extensions
import psycopg2.extras
import pytest
import runner_support
from api_support import token_of, upload
from longtask.api.settings import ApiSettings

from demo import files
from devcluster import seed
from longtask.values import normalize_phone

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

INTEGER_FIELDS = ("Block Code", "District Code")
STORED_VILLAGES = 3000


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    """The demo's files are a few hundred kB: a limit that takes them."""
    return api_settings.model_copy(update={"max_upload_bytes": 8 << 20})


def village_form(db: psycopg2.extensions.connection, org_id: int) -> tuple[int, list[str]]:
    """The demo's village-baseline form (every column of the Karnataka file, the two codes
    it types as integers); its id and field names."""
    header = [h for h in files.village_baseline(1).split(b"\n", 1)[0].decode().split(",")[1:]
              if h]
    fields = [(name, "integer" if name in INTEGER_FIELDS else "text", False)
              for name in header]
    return runner_support.create_form(db, org_id, "village-baseline", fields), header


def store_villages(db: psycopg2.extensions.connection, org_id: int, form_id: int,
                   data: bytes, *, rename: dict[str, str] | None = None) -> None:
    """Store ``data`` (a village_baseline file) as the form's baseline records, as a run
    of it would have; ``rename`` stores a column's values under another field."""
    rename = rename or {}
    rows = []
    for record in csv.DictReader(io.StringIO(data.decode())):
        values: dict[str, Any] = {}
        for name, value in record.items():
            if not name or name == "external_id" or not (value or "").strip():
                continue
            value = value.strip()
            values[rename.get(name, name)] = int(value) if name in INTEGER_FIELDS else value
        rows.append((org_id, form_id, record["external_id"], json.dumps(values)))
    with db.cursor() as cur:
        psycopg2.extras.execute_values(
            cur, "INSERT INTO collect.baseline_records (organization_id, form_id, external_id, "
            "data) VALUES %s", rows, page_size=1000)


def validate(client: httpx.Client, request: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/tasks/validate", json=request)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def baseline_report(client: httpx.Client, data: bytes, organization: str = "acme",
                    filename: str = "villages-more.csv") -> dict[str, Any]:
    file_id = upload(client, data, filename).json()["id"]
    return validate(client, {"type": "BaselineUpload", "organization": organization,
                             "params": {"form": "village-baseline", "fileId": file_id,
                                        "keyColumn": "external_id"}})


def codes(report: dict[str, Any]) -> list[str]:
    return [w["code"] for w in report["warnings"]]


def second_file(swapped: bool) -> bytes:
    """The demo's second village file (records the organization does not have yet)."""
    data = files.village_baseline(400, prefix="W", offset=STORED_VILLAGES)
    return files.swap_columns(data, "District Name", "Block Name") if swapped else data


# -------------------------------------------------------------------------- baseline


def test_the_demos_swapped_file_is_warned_naming_both_columns_with_evidence(
        db: psycopg2.extensions.connection, seeded: dict[str, int],
        operator: httpx.Client) -> None:
    form_id, _ = village_form(db, seeded["acme"])
    store_villages(db, seeded["acme"], form_id, files.village_baseline(STORED_VILLAGES))

    report = baseline_report(operator, second_file(swapped=True))

    assert report["valid"] is True, report["errors"]
    swapped = [w for w in report["warnings"] if w["code"] == "columns-swapped"]
    assert len(swapped) == 1, report["warnings"]
    warning = swapped[0]
    assert set(warning["columns"]) == {"District Name", "Block Name"}
    evidence = warning["evidence"]
    sides = {side["column"]: side for side in evidence["columns"]}
    assert set(sides) == {"District Name", "Block Name"}
    for side in sides.values():
        assert side["storedAsOtherField"] > side["storedAsOwnField"], side
    district = sides["District Name"]  # it holds block names now
    assert district["otherField"] == "Block Name"
    assert district["storedAsOtherField"] == district["sampled"] >= 10
    assert district["storedAsOwnField"] * 3 <= district["storedAsOtherField"]
    assert (f"{district['storedAsOtherField']} of {district['sampled']} values of "
            f"'District Name' are stored 'Block Name' values, "
            f"{district['storedAsOwnField']} are 'District Name' values") in warning["detail"]
    assert report["preflight"]["compared"] is True
    assert report["preflight"]["lookups"] > 0


def test_the_corrected_file_is_not_warned(db: psycopg2.extensions.connection,
                                          seeded: dict[str, int],
                                          operator: httpx.Client) -> None:
    form_id, _ = village_form(db, seeded["acme"])
    store_villages(db, seeded["acme"], form_id, files.village_baseline(STORED_VILLAGES))

    report = baseline_report(operator, second_file(swapped=False), filename="fixed.csv")

    assert report["valid"] is True, report["errors"]
    assert "columns-swapped" not in codes(report), report["warnings"]
    assert "values-of-another-field" not in codes(report), report["warnings"]
    assert report["preflight"]["compared"] is True, report["preflight"]


def test_a_first_upload_has_nothing_to_compare_with(db: psycopg2.extensions.connection,
                                                    seeded: dict[str, int],
                                                    operator: httpx.Client) -> None:
    village_form(db, seeded["acme"])

    report = baseline_report(operator, second_file(swapped=True))

    assert "columns-swapped" not in codes(report)
    assert report["preflight"]["compared"] is False
    assert "no stored records" in report["preflight"]["detail"]


def test_another_organizations_stored_values_never_count_nor_show(
        db: psycopg2.extensions.connection, seeded: dict[str, int], operator: httpx.Client,
        other: httpx.Client) -> None:
    """globex stores the villages with District and Block exchanged (and a marker): were
    its records compared, acme's corrected file would look swapped; acme's evidence and
    globex's own dry run show none of the other's values."""
    acme_form, _ = village_form(db, seeded["acme"])
    globex_form, _ = village_form(db, seeded["globex"])
    store_villages(db, seeded["acme"], acme_form, files.village_baseline(STORED_VILLAGES))
    marked = files.village_baseline(STORED_VILLAGES).replace(b"MANVI", b"GLOBEX-ONLY")
    store_villages(db, seeded["globex"], globex_form, marked,
                   rename={"District Name": "Block Name", "Block Name": "District Name"})

    clean = baseline_report(operator, second_file(swapped=False), filename="fixed.csv")
    swapped = baseline_report(operator, second_file(swapped=True))
    globex = baseline_report(other, second_file(swapped=False), organization="globex")

    assert "columns-swapped" not in codes(clean), clean["warnings"]
    assert "columns-swapped" in codes(swapped), swapped["warnings"]
    assert "GLOBEX-ONLY" not in json.dumps(swapped) + json.dumps(clean)
    # globex's own records are exchanged: the correct file looks swapped to globex only.
    assert "columns-swapped" in codes(globex), globex["warnings"]
    assert "acme" not in json.dumps(globex["warnings"])


def test_lookups_cut_short_by_the_statement_timeout_are_a_warning_not_an_error(
        db: psycopg2.extensions.connection, seeded: dict[str, int],
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    form_id, _ = village_form(db, seeded["acme"])
    store_villages(db, seeded["acme"], form_id, files.village_baseline(STORED_VILLAGES))
    url = serve(api_settings.model_copy(update={"validate_statement_timeout_seconds": 0.001}))
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Bearer {token_of('operator')}"}) as client:
        report = baseline_report(client, second_file(swapped=True))

    assert report["valid"] is True, report["errors"]
    assert "preflight-timed-out" in codes(report), report["warnings"]
    assert report["preflight"]["compared"] is False
    assert "statement timeout" in report["preflight"]["detail"]


# ----------------------------------------------------------------------------- teams


def existing_teams(db: psycopg2.extensions.connection, org_id: int, data: bytes,
                   count: int) -> None:
    """The organization's first ``count`` teams of ``data`` (a team_file), each with its
    manager, as an earlier upload made them."""
    rows = list(csv.DictReader(io.StringIO(data.decode())))[:count]
    with db.cursor() as cur:
        for row in rows:
            phone = normalize_phone(row["manager_phone"], "GB")
            cur.execute("INSERT INTO collect.field_users (organization_id, phone_e164) "
                        "VALUES (%s, %s) ON CONFLICT (organization_id, phone_e164) DO UPDATE "
                        "SET updated_at = now() RETURNING id", (org_id, phone))
            user_id = cur.fetchone()[0]
            cur.execute("INSERT INTO collect.teams (organization_id, name) VALUES (%s, %s) "
                        "RETURNING id", (org_id, row["team"]))
            team_id = cur.fetchone()[0]
            cur.execute("INSERT INTO collect.team_memberships (team_id, user_id, role) "
                        "VALUES (%s, %s, 'manager')", (team_id, user_id))


def teams_report(client: httpx.Client, data: bytes, organization: str = "acme") -> dict[str, Any]:
    file_id = upload(client, data, "teams.csv").json()["id"]
    return validate(client, {"type": "BulkTeamCreate", "organization": organization,
                             "params": {"fileId": file_id, "defaultRegion": "GB"}})


def test_a_teams_file_shifted_by_ten_rows_is_warned_with_offset_ten(
        db: psycopg2.extensions.connection, seeded: dict[str, int],
        operator: httpx.Client) -> None:
    existing_teams(db, seeded["acme"], files.team_file(300), 150)

    report = teams_report(operator, files.team_file(300, shift=10))

    shifted = [w for w in report["warnings"] if w["code"] == "column-shifted"]
    assert len(shifted) == 1, report["warnings"]
    warning = shifted[0]
    assert warning["columns"] == ["manager_phone"]
    assert warning["evidence"]["offset"] == 10
    assert warning["evidence"]["alignedAtOffset"] >= 100
    assert warning["evidence"]["alignedInPlace"] == 0
    assert "shifted down by 10 rows" in warning["detail"]


def test_an_unshifted_teams_file_is_not_warned(db: psycopg2.extensions.connection,
                                               seeded: dict[str, int],
                                               operator: httpx.Client) -> None:
    existing_teams(db, seeded["acme"], files.team_file(300), 150)

    report = teams_report(operator, files.team_file(300))

    assert "column-shifted" not in codes(report), report["warnings"]
    assert report["preflight"]["compared"] is True


def test_another_organizations_teams_never_count(db: psycopg2.extensions.connection,
                                                 seeded: dict[str, int],
                                                 operator: httpx.Client) -> None:
    """globex has the teams with managers ten rows off; acme has none of them."""
    existing_teams(db, seeded["globex"], files.team_file(300, shift=10), 150)

    report = teams_report(operator, files.team_file(300))

    assert "column-shifted" not in codes(report), report["warnings"]
    assert report["preflight"]["compared"] is False


# ---------------------------------------------------------------------------- export


def previous_exports(db: psycopg2.extensions.connection, organization: str,
                     totals: list[int], form: str = "household-survey") -> None:
    """Succeeded export records of ``form``, a day apart, newest last."""
    now = dt.datetime.now(dt.UTC)
    with db.cursor() as cur:
        for i, total in enumerate(totals):
            cur.execute(
                "INSERT INTO longtask.tasks (uid, type, organization, params, run_status, "
                "total, done, created_at) VALUES (%s, 'Export', %s, %s, 'succeeded', %s, %s, "
                "%s)", (uuid.uuid4(), organization,
                        json.dumps({"form": form, "from": "2018-08-01", "to": "2018-12-31"}),
                        total, total, now - dt.timedelta(days=len(totals) - i)))


@pytest.fixture
def survey(db: psycopg2.extensions.connection, seeded: dict[str, int]) -> None:
    """acme's household survey: 40,000 submissions over 2015-2018."""
    form_id = seed.submission_form(db, seeded["acme"])
    seed.submissions(db, seeded["acme"], form_id, 40_000,
                     dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
                     dt.datetime(2019, 1, 1, tzinfo=dt.UTC))


def export_report(client: httpx.Client, start: str) -> dict[str, Any]:
    return validate(client, {"type": "Export", "organization": "acme", "params": {
        "form": "household-survey", "from": start, "to": "2018-12-31"}})


def test_the_export_from_the_wrong_year_is_warned(db: psycopg2.extensions.connection,
                                                  survey: None, operator: httpx.Client) -> None:
    previous_exports(db, "acme", [4100, 4200, 4150, 4300])

    wrong = export_report(operator, "2015-08-01")
    right = export_report(operator, "2018-08-01")

    large = [w for w in wrong["warnings"] if w["code"] == "unusually-large"]
    assert len(large) == 1, wrong["warnings"]
    evidence = large[0]["evidence"]
    assert evidence["rows"] == wrong["rowsTotal"] > 5 * 4175
    assert evidence["medianRows"] == 4175
    assert evidence["asked"] == {"from": "2015-08-01", "to": "2018-12-31"}
    assert evidence["dataSpan"]["first"].startswith("2015-01-01")
    assert evidence["dataSpan"]["last"].startswith("2018-12-31")
    assert "2015-08-01 – 2018-12-31" in large[0]["detail"]
    assert "the form's submissions span 2015-01-01 – 2018-12-31" in large[0]["detail"]
    assert "unusually-large" not in codes(right), right["warnings"]
    assert right["preflight"]["compared"] is True


def test_another_organizations_exports_never_count(db: psycopg2.extensions.connection,
                                                   survey: None,
                                                   operator: httpx.Client) -> None:
    previous_exports(db, "globex", [10, 12, 11, 9])
    previous_exports(db, "acme", [30_000, 32_000, 31_000])

    report = export_report(operator, "2015-08-01")

    assert "unusually-large" not in codes(report), report["warnings"]
    assert report["preflight"]["compared"] is True
    assert "31,000" in report["preflight"]["detail"]


# ---------------------------------------------------------------------- the create path


def test_a_created_task_carries_the_warnings_of_its_preflight(
        db: psycopg2.extensions.connection, seeded: dict[str, int],
        operator: httpx.Client) -> None:
    form_id, _ = village_form(db, seeded["acme"])
    store_villages(db, seeded["acme"], form_id, files.village_baseline(STORED_VILLAGES))
    file_id = upload(operator, second_file(swapped=True), "villages-more.csv").json()["id"]

    created = operator.post("/v1/tasks", json={
        "type": "BaselineUpload", "organization": "acme",
        "params": {"form": "village-baseline", "fileId": file_id, "keyColumn": "external_id"}})

    assert created.status_code == 201, created.text
    task = operator.get(f"/v1/tasks/{created.json()['name']}").json()
    swapped = [w for w in task["preflight"] if w["code"] == "columns-swapped"]
    assert len(swapped) == 1, task["preflight"]
    assert set(swapped[0]["columns"]) == {"District Name", "Block Name"}
    assert swapped[0]["evidence"]["columns"]
