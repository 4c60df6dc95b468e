"""GET: list with filters and pages, one task, its row errors, its output, its history.

Row errors and export output are written by the real runner (run in this process with the
LongTask's uid, as the operator's Job would run it); no operator runs, so the tasks stay
Pending as far as Kubernetes knows.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from typing import Any

import httpx
import psycopg2.extensions
import pytest
import runner_support
from api_support import create_baseline, problem, upload
from longtask.runner.tasks.export import read_output

from devcluster import seed
from longtask import constants
from longtask.settings import RunnerSettings

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

SMALL_CHUNKS = RunnerSettings(chunk_initial_rows=40, chunk_min_rows=40, chunk_max_rows=40)


def run_as_job(runner_db_url: str, task: dict[str, Any]) -> int:
    """Run the real runner for the LongTask ``task`` (its uid, type and params)."""
    definition = runner_support.task(task["type"], task["params"],
                                     organization=task["organization"],
                                     uid=uuid.UUID(task["uid"]))
    return runner_support.run_inline(runner_db_url, definition, settings=SMALL_CHUNKS)


# --------------------------------------------------------------------------------- list


def test_list_shows_the_callers_organizations_newest_first_in_pages(
        operator: httpx.Client, other: httpx.Client, admin: httpx.Client) -> None:
    names = [create_baseline(operator, name=f"load-{i}")["name"] for i in range(3)]
    theirs = upload(other, b"head_name\nAwa\n", organization="globex").json()["id"]
    other.post("/v1/tasks", json={"type": "BaselineUpload", "organization": "globex",
                                  "name": "globex-load",
                                  "params": {"form": "Households", "fileId": theirs,
                                             "keyColumn": "head_name"}})

    first = operator.get("/v1/tasks")  # page size 2 in these tests
    second = operator.get("/v1/tasks", params={"cursor": first.json()["next"]})

    assert first.status_code == 200, first.text
    seen = [t["name"] for t in first.json()["items"] + second.json()["items"]]
    assert sorted(seen) == sorted(names), "acme's tasks only, each once"
    assert second.json()["next"] is None
    assert first.headers["link"].endswith('>; rel="next"')
    everything = admin.get("/v1/tasks", params={"limit": 10}).json()["items"]
    assert {t["organization"] for t in everything} == {"acme", "globex"}
    stamps = [t["createdAt"] for t in everything]
    assert stamps == sorted(stamps, reverse=True)


def test_the_api_labels_tasks_with_their_organization_and_lists_by_it(
        operator: httpx.Client, custom_objects: Any, api_namespace: str) -> None:
    created = create_baseline(operator, name="labelled")
    stored = custom_objects.get_namespaced_custom_object(
        constants.GROUP, constants.VERSION, api_namespace, constants.PLURAL, created["name"])
    # Made with kubectl: no label; one of acme's, one of globex's.
    for name, org in (("by-hand", "acme"), ("theirs-by-hand", "globex")):
        custom_objects.create_namespaced_custom_object(
            constants.GROUP, constants.VERSION, api_namespace, constants.PLURAL,
            {"apiVersion": constants.API_VERSION, "kind": constants.KIND,
             "metadata": {"name": name},
             "spec": {"type": "Export", "organization": org, "state": "Paused",
                      "params": {"form": "x", "from": "2017-08-01", "to": "2017-08-31"}}})

    listed = operator.get("/v1/tasks", params={"limit": 50}).json()["items"]

    assert stored["metadata"]["labels"] == {constants.LABEL_ORGANIZATION: "acme",
                                            f"{constants.GROUP}/requested-name": "labelled"}
    assert sorted(t["name"] for t in listed) == ["by-hand", created["name"]]


def test_list_filters_by_organization_type_and_phase(
        operator: httpx.Client, admin: httpx.Client) -> None:
    create_baseline(operator)

    def count(**params: Any) -> int:
        response = admin.get("/v1/tasks", params={"limit": 50, **params})
        assert response.status_code == 200, response.text
        return len(response.json()["items"])

    assert count(organization="acme") == 1
    assert count(organization="globex") == 0
    # Not a slug, so no organization: nothing, and no selector the server would refuse.
    assert count(organization=["\nP\u00dff#", "acme,globex", "a" * 80]) == 0
    assert count(type="BaselineUpload") == 1
    assert count(type=["Export", "BulkTeamCreate"]) == 0
    assert count(phase="Pending") == 1
    assert count(phase="Running") == 0


def test_list_refuses_a_bad_cursor_and_an_unknown_phase(viewer: httpx.Client) -> None:
    cursor = problem(viewer.get("/v1/tasks", params={"cursor": "bm90LWEtY3Vyc29y"}), 422)
    phase = problem(viewer.get("/v1/tasks", params={"phase": "Sleeping"}), 422)

    assert cursor["errors"][0]["parameter"] == "cursor"
    assert phase["errors"][0]["parameter"] == "phase"


@pytest.mark.parametrize("values", [[1, 2], ["a"], ["a", 2], [None, None], {"a": 1}, "x"])
def test_a_crafted_cursor_is_422_not_a_server_error(
        operator: httpx.Client, values: object) -> None:
    task = create_baseline(operator)
    crafted = base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")

    listed = problem(operator.get("/v1/tasks", params={"cursor": crafted}), 422)
    errors = operator.get(f"/v1/tasks/{task['name']}/errors", params={"cursor": crafted})

    assert listed["errors"][0]["parameter"] == "cursor"
    # Two integers are the shape of a row-error cursor (line, id): a page after them.
    assert errors.status_code == (200 if values == [1, 2] else 422), errors.text


# ---------------------------------------------------------------------------------- get


def test_get_returns_the_task_and_404_for_other_organizations(
        operator: httpx.Client, viewer: httpx.Client, other: httpx.Client) -> None:
    task = create_baseline(operator)

    seen = viewer.get(f"/v1/tasks/{task['name']}")

    assert seen.status_code == 200
    assert seen.json()["uid"] == task["uid"]
    assert seen.json()["requestedBy"] == "support-alice"
    hidden = problem(other.get(f"/v1/tasks/{task['name']}"), 404)
    missing = problem(other.get("/v1/tasks/no-such-task"), 404)
    assert hidden["title"] == missing["title"] == "Not Found"


def test_a_missing_or_bad_token_is_401_on_every_task_route(
        api_url: str, operator: httpx.Client) -> None:
    task = create_baseline(operator)
    routes = ["/v1/tasks", f"/v1/tasks/{task['name']}", f"/v1/tasks/{task['name']}/errors",
              f"/v1/tasks/{task['name']}/history", f"/v1/tasks/{task['name']}/output"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        for route in routes:
            response = httpx.get(api_url + route, headers=headers, timeout=10)
            assert response.status_code == 401, (route, headers, response.text)


# ---------------------------------------------------------------------------- row errors


def test_row_errors_come_from_the_runners_record_in_pages(
        operator: httpx.Client, other: httpx.Client, runner_db_url: str) -> None:
    data = (b"household_id,head_name,members\n"
            b"H-1,Awa Diop,4\nH-2,Moussa Fall,many\nH-3,,2\nH-4,Fatou Sow,1.5\nH-5,Ndeye,3\n")
    file_id = upload(operator, data).json()["id"]
    task = operator.post("/v1/tasks", json={
        "type": "BaselineUpload", "organization": "acme",
        "params": {"form": "Households", "fileId": file_id, "keyColumn": "household_id"},
    }).json()
    assert operator.get(f"/v1/tasks/{task['name']}/errors").json()["total"] == 0
    assert run_as_job(runner_db_url, task) == constants.EXIT_DONE

    first = operator.get(f"/v1/tasks/{task['name']}/errors", params={"limit": 2}).json()
    rest = operator.get(f"/v1/tasks/{task['name']}/errors",
                        params={"limit": 2, "cursor": first["next"]}).json()

    assert (first["total"], first["stored"]) == (3, 3)
    lines = [e["line"] for e in first["items"] + rest["items"]]
    assert lines == [3, 4, 5]
    assert first["items"][0]["column"] == "members"
    assert first["items"][0]["value"] == "many"
    assert rest["next"] is None
    problem(other.get(f"/v1/tasks/{task['name']}/errors"), 404)


# -------------------------------------------------------------------------------- output


@pytest.fixture
def export_task(operator: httpx.Client, db: psycopg2.extensions.connection,
                seeded: dict[str, int], runner_db_url: str) -> dict[str, Any]:
    """An Export of 300 submissions, run to completion by the real runner in 40-row parts."""
    form = seed.submission_form(db, seeded["acme"])
    seed.submissions(db, seeded["acme"], form, 300, dt.datetime(2017, 8, 1, tzinfo=dt.UTC),
                     dt.datetime(2017, 9, 1, tzinfo=dt.UTC))
    response = operator.post("/v1/tasks", json={
        "type": "Export", "organization": "acme",
        "params": {"form": "household-survey", "from": "2017-08-01", "to": "2017-08-31"}})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    assert run_as_job(runner_db_url, task) == constants.EXIT_DONE
    return task


def test_output_streams_the_parts_with_their_length_and_digest(
        operator: httpx.Client, export_task: dict[str, Any],
        db: psycopg2.extensions.connection) -> None:
    expected = read_output(db, uuid.UUID(export_task["uid"]))

    with operator.stream("GET", f"/v1/tasks/{export_task['name']}/output",
                         params={"partial": "true"}) as response:
        assert response.status_code == 200, response.read()
        body = response.read()

    digest = hashlib.sha256(body).hexdigest()
    assert body == expected
    assert body.count(b"\n") == 301, "header and 300 rows"
    assert int(response.headers["content-length"]) == len(body)
    assert response.headers["longtask-output-sha256"] == digest
    assert response.headers["repr-digest"] == (
        f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:")
    assert response.headers["longtask-output-rows"] == "300"
    assert response.headers["longtask-output-complete"] == "false"
    assert response.headers["content-type"].startswith("text/csv")


def test_output_waits_for_success_unless_partial_is_asked(
        operator: httpx.Client, export_task: dict[str, Any]) -> None:
    body = problem(operator.get(f"/v1/tasks/{export_task['name']}/output"), 409)

    assert body["phase"] == "Pending"
    assert "partial=true" in body["detail"]


def test_output_of_a_task_that_writes_none_is_404(operator: httpx.Client) -> None:
    task = create_baseline(operator)

    body = problem(operator.get(f"/v1/tasks/{task['name']}/output"), 404)

    assert "BaselineUpload" in body["detail"]


def test_output_of_another_organizations_export_is_404(
        other: httpx.Client, export_task: dict[str, Any]) -> None:
    problem(other.get(f"/v1/tasks/{export_task['name']}/output",
                      params={"partial": "true"}), 404)


# ------------------------------------------------------------------------------- history


def test_history_lists_each_request_with_who_and_why(
        operator: httpx.Client, admin: httpx.Client, viewer: httpx.Client) -> None:
    task = create_baseline(operator, reason="census load")
    operator.post(f"/v1/tasks/{task['name']}/pause", json={"reason": "check the file"})
    admin.post(f"/v1/tasks/{task['name']}/terminate", json={"reason": "columns swapped"})

    history = viewer.get(f"/v1/tasks/{task['name']}/history").json()

    messages = [e["message"] for e in history["entries"]]
    assert [e["reason"] for e in history["entries"]] == [
        "CreateRequested", "ControlRequested", "ControlRequested"], messages
    assert "support-alice" in messages[0] and "census load" in messages[0]
    assert "pause" in messages[1] and "check the file" in messages[1]
    assert "admin-ada" in messages[2] and "columns swapped" in messages[2]
    assert {e["source"] for e in history["entries"]} == {"longtask-api"}
    assert (history["requestedBy"], history["reason"]) == ("admin-ada", "columns swapped")


def test_conflicts_list_the_rows_a_rollback_left_page_by_page(
        operator: httpx.Client, other: httpx.Client, db: psycopg2.extensions.connection,
        runner_db_url: str, seeded: dict[str, int]) -> None:
    file_id = upload(operator, b"team,manager_phone,member_phones\n"
                               b"North,9876543210,9876543211\nSouth,9876543220,\n").json()["id"]
    response = operator.post("/v1/tasks", json={
        "type": "BulkTeamCreate", "organization": "acme", "params": {"fileId": file_id}})
    assert response.status_code == 201, response.text
    task = response.json()
    assert run_as_job(runner_db_url, task) == constants.EXIT_DONE
    empty = operator.get(f"/v1/tasks/{task['name']}/conflicts").json()
    with db.cursor() as cur:
        cur.execute("UPDATE collect.teams SET name = 'North (renamed)' WHERE name = 'North'")
    definition = runner_support.task(task["type"], task["params"], organization="acme",
                                     uid=uuid.UUID(task["uid"]))
    assert runner_support.run_inline(runner_db_url, definition, "rollback") == constants.EXIT_DONE

    pages = [operator.get(f"/v1/tasks/{task['name']}/conflicts", params={"limit": 2}).json()]
    while pages[-1]["next"] and len(pages) < 5:
        pages.append(operator.get(f"/v1/tasks/{task['name']}/conflicts",
                                  params={"limit": 2, "cursor": pages[-1]["next"]}).json())

    assert empty == {"total": 0, "items": [], "next": None}
    items = [item for page in pages for item in page["items"]]
    assert [len(page["items"]) for page in pages] == [2, 2, 1], pages
    assert pages[0]["total"] == len(items) == 5, pages
    assert [(i["table"], i["reason"].split(" ")[0]) for i in items] == [
        ("field_users", "still"), ("field_users", "still"),
        ("team_memberships", "kept"), ("team_memberships", "kept"), ("teams", "changed")]
    problem(other.get(f"/v1/tasks/{task['name']}/conflicts"), 404)
