"""Dry runs in their own bounded pool, within a time and memory budget: hostile files
cannot stall the API for others, and the report says what was sampled and how."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from api_support import baseline_request, problem, token_of, upload
from longtask.api.settings import ApiSettings

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

CELL = 100_000  # characters: the longest cells of bench/cells_bench.py
# Shapes from bench/cells_bench.py, under the Households form's columns.
SHAPES: dict[str, Callable[[int], str]] = {
    "digits": lambda n: "1" * n,
    "spaces": lambda n: "1" + " " * (n - 2) + "1",
    "commas": lambda n: ("1," * n)[:n],
    "dashes": lambda n: ("1-" * n)[:n],
}
PROBE_TIMEOUT = 5.0  # seconds: "answers at all", not a speed target


def hostile_csv(rows: int) -> bytes:
    """Households rows whose name, members and phone cells are 100,000 characters each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["household_id", "head_name", "members", "phone"])
    shapes = list(SHAPES.values())
    for i in range(rows):
        writer.writerow([f"H-{i}", shapes[i % 4](CELL), shapes[(i + 1) % 4](CELL),
                         shapes[(i + 2) % 4](CELL)])
    return out.getvalue().encode()


def plain_csv(rows: int) -> bytes:
    lines = ["household_id,head_name,members,phone"]
    lines += [f"H-{i},Awa Diop {i},{i % 9 + 1},+221339612727" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    """Room for hostile files (tens of MB)."""
    return api_settings.model_copy(update={"max_upload_bytes": 48 << 20})


def _serve(serve: Callable[[ApiSettings], str], settings: ApiSettings, **update: Any) -> str:
    return serve(settings.model_copy(update=update))


def _client(url: str, role: str, timeout: float = 60) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=timeout,
                        headers={"Authorization": f"Bearer {token_of(role)}"})


def _at_once(url: str, roles: list[str], body: dict[str, Any],
             params: dict[str, Any] | None = None) -> list[httpx.Response]:
    """POST /v1/tasks/validate from each role's own client, all released together."""
    barrier = threading.Barrier(len(roles))
    answers: list[httpx.Response | None] = [None] * len(roles)

    def call(i: int, role: str) -> None:
        with _client(url, role) as client:
            barrier.wait(timeout=30)
            answers[i] = client.post("/v1/tasks/validate", json=body, params=params)

    threads = [threading.Thread(target=call, args=(i, r)) for i, r in enumerate(roles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert all(a is not None for a in answers), "every validation answered"
    return [a for a in answers if a is not None]


def test_hostile_validations_leave_healthz_and_reads_answering(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    url = _serve(serve, api_settings, validate_budget_seconds=3.0,
                 validate_max_bytes=1 << 30, max_validations=4, max_validations_per_subject=2)
    with _client(url, "operator") as operator:
        file_id = upload(operator, hostile_csv(100)).json()["id"]
    body = baseline_request(file_id)
    done = threading.Event()
    answers: list[httpx.Response] = []

    def hostile() -> None:
        try:
            answers.extend(_at_once(url, ["viewer", "viewer", "operator", "operator"], body,
                                    {"rows": 5000}))
        finally:
            done.set()

    worker = threading.Thread(target=hostile)
    worker.start()
    probes: list[tuple[int, int]] = []
    during = 0
    with _client(url, "admin", timeout=PROBE_TIMEOUT) as admin:
        while not done.is_set() or not probes:
            health = admin.get("/healthz")
            stored = admin.get(f"/v1/files/{file_id}")
            probes.append((health.status_code, stored.status_code))
            during += not done.is_set()
    worker.join(timeout=100)

    assert during >= 1, "at least one probe ran while the validations did"
    assert "longtask_api_validations 0.0" in httpx.get(f"{url}/metrics").text, (
        "every slot given back")
    assert set(probes) == {(200, 200)}, probes
    assert [a.status_code for a in answers] == [200] * 4, [a.text[:300] for a in answers]
    for answer in answers:
        sampled = answer.json()["sampled"]
        assert sampled["stoppedBy"] in ("seconds", "end"), sampled


def test_one_subject_beyond_its_share_of_dry_runs_is_429(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    url = _serve(serve, api_settings, validate_budget_seconds=3.0, validate_max_bytes=1 << 30,
                 max_validations=8, max_validations_per_subject=1)
    with _client(url, "operator") as operator:
        file_id = upload(operator, hostile_csv(60)).json()["id"]

    answers = _at_once(url, ["viewer"] * 4, baseline_request(file_id), {"rows": 5000})

    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= 1 and set(codes) <= {200, 429}, codes
    refused = next((a for a in answers if a.status_code == 429), None)
    assert refused is not None, codes
    body = problem(refused, 429)
    assert body["type"].endswith("/too-many-validations")
    assert refused.headers["retry-after"].isdigit()


def test_a_full_pool_of_dry_runs_is_503_for_everyone_else(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    url = _serve(serve, api_settings, validate_budget_seconds=3.0, validate_max_bytes=1 << 30,
                 max_validations=1, max_validations_per_subject=4)
    with _client(url, "operator") as operator:
        file_id = upload(operator, hostile_csv(60)).json()["id"]

    answers = _at_once(url, ["viewer", "viewer", "operator", "admin"],
                       baseline_request(file_id), {"rows": 5000})

    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= 1 and set(codes) <= {200, 503}, codes
    refused = next(a for a in answers if a.status_code == 503)
    assert problem(refused, 503)["type"].endswith("/too-many-validations")
    assert refused.headers["retry-after"].isdigit()


def test_a_dry_run_out_of_time_stops_reading_and_says_so(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    url = _serve(serve, api_settings, validate_budget_seconds=0.1, validate_max_bytes=1 << 30)
    with _client(url, "operator") as operator:
        file_id = upload(operator, hostile_csv(100)).json()["id"]
        report = operator.post("/v1/tasks/validate", json=baseline_request(file_id),
                               params={"rows": 5000}).json()

    assert report["sampled"]["stoppedBy"] == "seconds", report["sampled"]
    assert report["rowsRead"] == report["sampled"]["rows"] < 100
    assert report["rowsTotal"] is None or report["rowsTotalEstimated"] is True


def test_what_a_dry_run_keeps_is_bounded_whatever_the_cells_hold(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    url = _serve(serve, api_settings, validate_budget_seconds=30, validate_max_bytes=4 << 20)
    with _client(url, "operator") as operator:
        file_id = upload(operator, hostile_csv(40)).json()["id"]
        response = operator.post("/v1/tasks/validate", json=baseline_request(file_id),
                                 params={"rows": 5000})
    report = response.json()

    assert response.status_code == 200, response.text[:500]
    assert report["sampled"]["stoppedBy"] == "bytes", report["sampled"]
    assert report["sampled"]["bytes"] <= 4 << 20
    assert report["rowsRead"] < 40
    assert len(response.content) < 256 << 10, "the report holds no cell whole"
    for column in report["columns"]:
        assert len(column["samples"]) <= 5
        assert all(len(v) <= 60 for v in column["samples"])
    assert report["rowErrors"], "100,000-digit members are row errors"
    assert all(len(e["value"] or "") <= 200 for e in report["rowErrors"])
    assert report["rowErrorsTotal"] == len({e["line"] for e in report["rowErrors"]}), (
        "rows counted, each bad row listed")


def test_the_row_count_of_a_large_file_is_estimated_past_its_byte_bound(
        serve: Callable[[ApiSettings], str], api_settings: ApiSettings) -> None:
    rows = 120_000
    url = _serve(serve, api_settings, validate_count_bytes=1 << 16)
    with _client(url, "operator") as operator:
        file_id = upload(operator, plain_csv(rows)).json()["id"]
        small = upload(operator, plain_csv(50)).json()["id"]
        big = operator.post("/v1/tasks/validate", json=baseline_request(file_id),
                            params={"rows": 10}).json()
        whole = operator.post("/v1/tasks/validate", json=baseline_request(small)).json()

    assert big["sampled"] == big["sampled"] | {"rows": 10, "stoppedBy": "rows"}
    assert big["rowsTotalEstimated"] is True
    assert abs(big["rowsTotal"] - rows) / rows < 0.05, big["rowsTotal"]
    assert big["countBytes"] < big["file"]["sizeBytes"]
    assert (whole["rowsTotal"], whole["rowsTotalEstimated"]) == (50, False)
    assert whole["sampled"]["stoppedBy"] == "end"
