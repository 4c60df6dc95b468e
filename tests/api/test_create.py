"""POST /v1/tasks: a LongTask is created from a checked request, once per Idempotency-Key."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import httpx
import psycopg2.extensions
import pytest
from api_support import baseline_request, create_baseline, problem, token_of, upload
from longtask.api.settings import ApiSettings

from devcluster import seed
from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY, GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    """Four dry runs of one subject at once: the racing retries below are one caller's."""
    return api_settings.model_copy(update={"max_validations": 8,
                                           "max_validations_per_subject": 4})


def longtasks(custom_objects: Any, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = custom_objects.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL)["items"]
    return items


def file_id(client: httpx.Client) -> str:
    response = upload(client, b"household_id,head_name\nH-1,Awa Diop\n")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_create_makes_a_longtask_with_the_spec_and_who_asked(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    response = operator.post("/v1/tasks", json=baseline_request(
        file_id(operator), reason="first load of the 2024 census"))

    assert response.status_code == 201, response.text
    task = response.json()
    assert response.headers["location"] == f"/v1/tasks/{task['name']}"
    assert task["name"].startswith("baselineupload-acme-")
    assert (task["phase"], task["state"], task["onTerminate"]) == ("Pending", "Running",
                                                                   "Rollback")
    assert task["concurrencyKey"] == "BaselineUpload/acme"
    [stored] = longtasks(custom_objects, api_namespace)
    assert stored["metadata"]["name"] == task["name"]
    assert stored["spec"]["params"]["form"] == "Households"
    annotations = stored["metadata"]["annotations"]
    assert annotations[ANNOTATION_REQUESTED_BY] == "support-alice"
    assert annotations[ANNOTATION_REASON] == "first load of the 2024 census"
    assert "status" not in stored, "the API never writes status"


def test_create_can_start_paused_with_a_name_and_a_rate_limit(operator: httpx.Client) -> None:
    task = create_baseline(operator, name="census-2024", state="Paused", rateLimit=500,
                           concurrencyKey="BaselineUpload/acme", onTerminate="Keep")

    assert (task["requestedName"], task["state"], task["rateLimit"]) == (
        "census-2024", "Paused", 500)
    assert task["name"].startswith("census-2024-"), "the name, scoped by the organization"
    assert (task["concurrencyKey"], task["onTerminate"]) == ("BaselineUpload/acme", "Keep")


def test_a_concurrency_key_must_be_the_callers_organizations(
        operator: httpx.Client, custom_objects: Any, api_namespace: str,
        db: psycopg2.extensions.connection, seeded: dict[str, int]) -> None:
    seed.submission_form(db, seeded["acme"])
    export = {"type": "Export", "organization": "acme",
              "params": {"form": "household-survey", "from": "2017-08-01", "to": "2017-08-31"}}

    # Keys are compared across the namespace: another organization's would block its tasks.
    for key in ("Export/globex/household-survey", "BaselineUpload/globex", "acme", "x/acmex"):
        refused = problem(operator.post("/v1/tasks", json={**export, "concurrencyKey": key}),
                          422)
        [error] = refused["errors"]
        assert error["pointer"] == "#/concurrencyKey", error
        assert f"concurrency key {key!r} must name organization 'acme'" in error["detail"]
    assert longtasks(custom_objects, api_namespace) == []

    response = operator.post("/v1/tasks", json={**export, "concurrencyKey": "Export/acme/nightly"})
    assert response.status_code == 201, response.text
    assert response.json()["concurrencyKey"] == "Export/acme/nightly"


def test_a_baseline_upload_takes_no_key_but_its_organizations_one(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    # One baseline upload per organization at a time: another key would escape that.
    request = baseline_request(file_id(operator), concurrencyKey="BaselineUpload/acme/second")

    refused = problem(operator.post("/v1/tasks", json=request), 422)

    [error] = refused["errors"]
    assert error["pointer"] == "#/concurrencyKey", error
    assert error["detail"] == ("a BaselineUpload task's concurrency key is "
                               "'BaselineUpload/acme', not 'BaselineUpload/acme/second'")
    assert longtasks(custom_objects, api_namespace) == []


def test_params_that_do_not_fit_the_type_are_422_with_their_paths(
        operator: httpx.Client) -> None:
    body = problem(operator.post("/v1/tasks", json={
        "type": "BaselineUpload", "organization": "acme",
        "params": {"form": "Households", "fileId": "not-a-uuid", "colour": "red"}}), 422)

    pointers = {e["pointer"] for e in body["errors"]}
    assert {"#/params/fileId", "#/params/colour"} <= pointers, body


def test_an_unknown_type_is_422_pointing_at_type(operator: httpx.Client) -> None:
    body = problem(operator.post("/v1/tasks", json={
        "type": "Reindex", "organization": "acme", "params": {}}), 422)

    assert body["errors"][0]["pointer"] == "#/type"


def test_a_file_of_another_organization_is_422_as_if_missing(
        operator: httpx.Client, other: httpx.Client) -> None:
    theirs = upload(other, b"head_name\nAwa\n", organization="globex").json()["id"]

    body = problem(operator.post("/v1/tasks", json=baseline_request(theirs)), 422)

    assert body["errors"][0]["pointer"] == "#/params/fileId"
    assert "no file" in body["errors"][0]["detail"]


def test_an_unknown_form_is_422_pointing_at_params_form(operator: httpx.Client) -> None:
    request = baseline_request(file_id(operator))
    request["params"]["form"] = "Villages"

    body = problem(operator.post("/v1/tasks", json=request), 422)

    assert body["errors"][0]["pointer"] == "#/params/form"


def test_creating_for_an_organization_the_token_does_not_hold_is_403(
        operator: httpx.Client, admin: httpx.Client) -> None:
    request = baseline_request(file_id(operator)) | {"organization": "globex"}

    problem(operator.post("/v1/tasks", json=request), 403)


def test_a_viewer_may_not_create(viewer: httpx.Client, operator: httpx.Client) -> None:
    problem(viewer.post("/v1/tasks", json=baseline_request(file_id(operator))), 403)


def test_a_retry_with_the_same_idempotency_key_returns_the_same_task(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    request = baseline_request(file_id(operator))
    headers = {"Idempotency-Key": "upload-7f3a"}

    first = operator.post("/v1/tasks", json=request, headers=headers)
    again = operator.post("/v1/tasks", json=request, headers=headers)

    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json()["uid"] == first.json()["uid"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(longtasks(custom_objects, api_namespace)) == 1


def test_racing_retries_with_one_key_create_one_task(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    request = baseline_request(file_id(operator))

    def create(_: int) -> httpx.Response:
        return operator.post("/v1/tasks", json=request, headers={"Idempotency-Key": "race-1"})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(create, range(4)))

    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["uid"] for r in responses}) == 1
    assert len(longtasks(custom_objects, api_namespace)) == 1


def test_an_idempotency_key_survives_an_api_restart(
        operator: httpx.Client, serve: Callable[[ApiSettings], str],
        api_settings: ApiSettings) -> None:
    request = baseline_request(file_id(operator))
    first = operator.post("/v1/tasks", json=request, headers={"Idempotency-Key": "k-9"})
    restarted = httpx.Client(base_url=serve(api_settings), timeout=30,
                             headers={"Authorization": f"Bearer {token_of('operator')}"})

    again = restarted.post("/v1/tasks", json=request, headers={"Idempotency-Key": "k-9"})
    restarted.close()

    assert again.status_code == 201, again.text
    assert again.json()["uid"] == first.json()["uid"]


def test_an_idempotency_key_reused_for_another_request_is_422(operator: httpx.Client) -> None:
    request = baseline_request(file_id(operator))
    operator.post("/v1/tasks", json=request, headers={"Idempotency-Key": "k-1"})

    body = problem(operator.post("/v1/tasks", json=request | {"rateLimit": 10},
                                 headers={"Idempotency-Key": "k-1"}), 422)

    assert body["errors"][0]["parameter"] == "Idempotency-Key"


def test_a_name_another_organization_holds_is_free_and_tells_nothing(
        operator: httpx.Client, other: httpx.Client, custom_objects: Any,
        api_namespace: str) -> None:
    ours = create_baseline(operator, name="census")
    theirs_file = upload(other, b"head_name\nAwa\n", organization="globex").json()["id"]

    def globex_creates(name: str) -> httpx.Response:
        return other.post("/v1/tasks", json={
            "type": "BaselineUpload", "organization": "globex", "name": name,
            "params": {"form": "Households", "fileId": theirs_file, "keyColumn": "head_name"}})

    held, free = globex_creates("census"), globex_creates("nobody-has-this")

    assert (held.status_code, free.status_code) == (201, 201), (held.text, free.text)
    assert held.json().keys() == free.json().keys()
    assert held.json()["requestedName"] == "census"
    assert held.json()["name"] != ours["name"]
    assert other.get(f"/v1/tasks/{ours['name']}").status_code == 404
    assert operator.get(f"/v1/tasks/{held.json()['name']}").status_code == 404
    names = {t["metadata"]["name"] for t in longtasks(custom_objects, api_namespace)}
    assert {ours["name"], held.json()["name"]} <= names


def test_a_chosen_name_with_an_idempotency_key_replays(operator: httpx.Client) -> None:
    request = baseline_request(file_id(operator), name="nightly")
    first = operator.post("/v1/tasks", json=request, headers={"Idempotency-Key": "n-1"})
    again = operator.post("/v1/tasks", json=request, headers={"Idempotency-Key": "n-1"})

    assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["uid"] == first.json()["uid"]


def test_a_name_already_taken_is_409(operator: httpx.Client) -> None:
    create_baseline(operator, name="census")

    body = problem(operator.post("/v1/tasks", json=baseline_request(
        file_id(operator), name="census")), 409)

    assert "census" in body["detail"]


def test_a_request_body_over_a_mebibyte_is_413_whether_declared_or_streamed(
        operator: httpx.Client) -> None:
    big = b'{"type": "Export", "organization": "acme", "params": {"x": "' + b"a" * (2 << 20)

    declared = operator.post("/v1/tasks", content=big + b'"}},',
                             headers={"Content-Type": "application/json"})
    streamed = operator.post("/v1/tasks", content=iter([big[:1 << 19]] * 4),
                             headers={"Content-Type": "application/json"})

    problem(declared, 413)
    assert "content-length" not in streamed.request.headers
    problem(streamed, 413)
