"""POST /v1/tasks refuses what POST /v1/tasks/validate calls invalid, with the same problem
details, before any LongTask exists; and a file whose every row is a row error is invalid."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_support import problem, upload

from longtask.constants import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

# acme's form Households: household_id (text, required), head_name (text, required),
# members (integer), phone (phone).
REFUSED_FILES = {
    "duplicate headers": (b"household_id,head_name,HEAD_NAME \nH-1,Awa Diop,Awa\n",
                          "columns 2 and 3 have the same name"),
    "a missing required column": (b"household_id,members\nH-1,4\n",
                                  "required fields of form 'Households' have no column: "
                                  "'head_name'"),
    "a header only": (b"household_id,head_name,members\n", "has no data rows"),
    "every row a row error": (b"household_id,head_name,members\nH-1,Awa Diop,four\n"
                              b"H-2,,2\nH-3,Fatou Sow,1.5\n",
                              "none of the file's 3 data rows can be written"),
}


def request(file_id: str) -> dict[str, Any]:
    return {"type": "BaselineUpload", "organization": "acme",
            "params": {"form": "Households", "fileId": file_id, "keyColumn": "household_id"}}


def longtasks(custom_objects: Any, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = custom_objects.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL)["items"]
    return items


@pytest.mark.parametrize("case", REFUSED_FILES)
def test_create_refuses_what_validate_calls_invalid_with_the_same_errors(
        operator: httpx.Client, custom_objects: Any, api_namespace: str, case: str) -> None:
    data, words = REFUSED_FILES[case]
    body = request(upload(operator, data).json()["id"])

    report = operator.post("/v1/tasks/validate", json=body).json()
    refused = problem(operator.post("/v1/tasks", json=body), 422)

    assert report["valid"] is False
    assert words in report["errors"][0]["detail"], report["errors"]
    assert refused["errors"] == report["errors"], "the same problem, in the same words"
    assert refused["errors"][0]["pointer"] == "#/params/fileId"
    assert words in refused["detail"]
    assert longtasks(custom_objects, api_namespace) == [], "no LongTask was made"


def test_every_row_a_row_error_names_the_first_row_at_fault(operator: httpx.Client) -> None:
    data, _ = REFUSED_FILES["every row a row error"]
    report = operator.post("/v1/tasks/validate",
                           json=request(upload(operator, data).json()["id"])).json()

    detail = report["errors"][0]["detail"]
    assert "line 2, column 'members'" in detail and "the task would write nothing" in detail
    assert [e["line"] for e in report["rowErrors"]] == [2, 3, 4]


def test_a_sample_of_bad_rows_from_a_longer_file_is_a_warning_not_a_refusal(
        operator: httpx.Client) -> None:
    data = b"household_id,head_name,members\n" + b"".join(
        b"H-%d,Awa Diop,many\n" % i for i in range(10)) + b"H-99,Fatou Sow,3\n"
    body = request(upload(operator, data).json()["id"])

    report = operator.post("/v1/tasks/validate", json=body, params={"rows": 5}).json()

    assert report["valid"] is True, report["errors"]
    [warning] = [w for w in report["warnings"] if w["code"] == "no-rows-written"]
    assert warning["detail"].startswith("none of the first 5 data rows can be written")
    assert operator.post("/v1/tasks", json=body).status_code == 201, (
        "the rows after the sample may be written: the task may be created")


def test_a_valid_file_is_created_once_checked(operator: httpx.Client, custom_objects: Any,
                                              api_namespace: str) -> None:
    file_id = upload(operator, b"household_id,head_name\nH-1,Awa Diop\n").json()["id"]

    response = operator.post("/v1/tasks", json=request(file_id))

    assert response.status_code == 201, response.text
    assert len(longtasks(custom_objects, api_namespace)) == 1


@pytest.mark.parametrize(("given", "said"), [
    ("2019-02-30", "'2019-02-30' is not a date: February 2019 has 28 days"),
    ("2019-13-01", "'2019-13-01' is not a date: there is no month 13"),
    ("2017-08-01T10:00", "'2017-08-01T10:00' is a date and time: give the date alone, as "
                         "YYYY-MM-DD"),
    ("01/08/2017", "'01/08/2017' is not a date written YYYY-MM-DD (e.g. 2017-08-01)"),
    (1501545600, 'a date is written as a string YYYY-MM-DD (e.g. "2017-08-01"), not int'),
])
def test_export_dates_are_refused_in_terms_of_dates(
        operator: httpx.Client, custom_objects: Any, api_namespace: str, given: Any,
        said: str) -> None:
    body = {"type": "Export", "organization": "acme",
            "params": {"form": "Households", "from": given, "to": "2017-08-31"}}

    refused = problem(operator.post("/v1/tasks", json=body), 422)
    report = operator.post("/v1/tasks/validate", json=body).json()

    [error] = refused["errors"]
    assert error["pointer"] == "#/params/from"
    assert error["detail"].startswith(said), error
    assert "datetime" not in error["detail"]
    assert report["errors"] == refused["errors"]
    assert longtasks(custom_objects, api_namespace) == []


def test_from_after_to_is_refused_naming_both_dates(operator: httpx.Client) -> None:
    refused = problem(operator.post("/v1/tasks", json={
        "type": "Export", "organization": "acme",
        "params": {"form": "Households", "from": "2019-01-01", "to": "2018-12-31"}}), 422)

    assert refused["errors"][0]["detail"] == (
        "'from' (2019-01-01) is after 'to' (2018-12-31)")
