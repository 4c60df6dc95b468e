"""The console clicked through in a real browser against the whole stack: the baseline
upload of the example villages (upload with its progress bar, the review screen's mapping,
start, pause, resume and terminate, each with a reason), a swapped file's warning on the
review screen and, started anyway, its row errors by line and column on the task's page,
an export downloaded with its checksum, and the bulk team creation: the shifted file
terminated and rolled back, the corrected one paused, resumed and finished. Screenshots
of the list, a running task and the review screen are saved into each test's tmp
folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ORG, Console, bearer
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from demo import files
from devcluster import stack
from longtask.db import connect

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

RUN_START = 120.0       # seconds for a runner pod to start and report Running
CONTROL = 90.0          # seconds for a pause, resume or terminate to show in the phase


def new_task(console: Console, task_type: str, params: dict[str, str],
             file: Path | None = None, rate: str = "", reason: str = "") -> None:
    """Fill the new task's form, upload ``file`` (waiting for its progress bar to reach
    the end) and press Check: the review screen is then shown."""
    console.open("#/new")
    console.visible("#new-title")
    Select(console.find("#new-organization")).select_by_value(ORG)
    Select(console.find("#new-type")).select_by_value(task_type)
    if file is not None:
        console.find("#new-file").send_keys(str(file))
        console.find("#new-upload").click()
        console.text_in("#upload-text", f"Uploaded {file.name}")
        assert console.find("#upload-progress").get_attribute("value") == "100"
    for name, value in params.items():
        field = console.find(f"#p-{name}")
        # A date field's typed form follows the browser's locale: set its value directly.
        console.driver.execute_script("arguments[0].value = arguments[1]", field, value)
    if rate:
        console.find("#new-rate").send_keys(rate)
    if reason:
        console.find("#new-reason").send_keys(reason)
    console.find("#new-check").click()
    console.visible("#review")


def control(console: Console, action: str, reason: str, rollback: str | None = None) -> None:
    """Press a control button, give the reason in its dialog, confirm."""
    console.find(f'[data-action="{action}"]').click()
    console.visible("#control-dialog")
    if action == "terminate":
        note = console.visible("#control-no-preview").text
        assert "What a rollback would undo is not available" in note
    if rollback is not None:
        console.find(f'input[name="rollback"][value="{rollback}"]').click()
    console.find("#control-reason").send_keys(reason)
    console.find("#control-confirm").click()
    console.wait(lambda d: not d.find_element(By.ID, "control-dialog").is_displayed(),
                 f"the {action} dialog to close (the API accepted it)")


def test_baseline_upload_clicked_through(console: Console, live: stack.Stack,
                                         example_files: Path) -> None:
    console.sign_in(live.tokens[ORG])
    new_task(console, "BaselineUpload", {"form": "villages", "keyColumn": "external_id"},
             file=example_files / "villages.csv", rate="25", reason="2024 village baseline")

    mapped = console.driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#review-columns tbody tr')]"
        ".map(r => [r.dataset.column, r.children[2].textContent]))")
    assert mapped["Village Name"] == "→ Village Name"
    assert mapped["District Code"] == "→ District Code"
    assert console.find("#review-summary").text.startswith("The task can start: it would "
                                                           "process 2,000 rows")
    samples = console.find('#review-columns tr[data-column="District Name"] .samples').text
    assert samples, "the review shows sample values of each column"
    console.shot("review-1280")
    console.shot("review-390", width=390)

    console.find("#new-start").click()
    console.wait(lambda d: d.current_url.split("#", 1)[-1].startswith("/tasks/"),
                 "the new task's page")
    name = console.driver.current_url.split("#/tasks/", 1)[1]
    console.phase({"Running"}, RUN_START)
    console.text_in("#task-facts", "2024 village baseline")
    console.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#task-progress progress")
                 .get_attribute("aria-valuetext").endswith("%)"),
                 "a progress bar with done, total and percent")
    console.text_in('#task-facts dd[data-fact="Rate"]', "rows/s", CONTROL)   # once measured
    console.shot("task-running-1280")

    control(console, "pause", "checking the district column")
    console.phase({"Paused"}, CONTROL)
    console.text_in("#history", "checking the district column")
    control(console, "resume", "the district column is right")
    console.phase({"Running"}, RUN_START)
    control(console, "terminate", "wrong village list", rollback="true")
    console.phase({"RollingBack", "RolledBack"}, CONTROL)
    console.text_in("#task-facts", "wrong village list")

    console.open("#/tasks")
    row = console.visible(f'tr[data-task="{name}"]')
    assert ORG in row.text and "wrong village list" in row.text
    bar = row.find_element(By.TAG_NAME, "progress")
    assert bar.get_attribute("aria-label") and bar.get_attribute("aria-valuetext")
    with bearer(live) as client:
        task = client.get(f"/v1/tasks/{name}").json()
    assert (task["state"], task["requestedBy"]) == ("Terminated", f"{ORG}-support")


def test_the_review_screen_warns_of_swapped_columns(console: Console, live: stack.Stack,
                                                    example_files: Path,
                                                    tmp_path: Path) -> None:
    swapped = tmp_path / "villages-swapped.csv"
    swapped.write_bytes(files.swap_columns((example_files / "villages.csv").read_bytes(),
                                           "District Code", "District Name"))
    console.sign_in(live.tokens[ORG])

    new_task(console, "BaselineUpload", {"form": "villages", "keyColumn": "external_id"},
             file=swapped)

    warning = console.visible('#review-warnings li[data-code="columns-swapped"]').text
    assert "District Code" in warning and "District Name" in warning
    flagged = console.driver.execute_script(
        "return [...document.querySelectorAll('#review-columns tr.flagged')]"
        ".map(r => r.dataset.column)")
    assert sorted(flagged) == ["District Code", "District Name"]
    console.shot("review-swapped-1280")
    console.shot("review-swapped-390", width=390)

    # Started all the same, its rows are refused: the task's page lists them by line.
    console.find("#new-start").click()
    console.phase({"Failed", "Succeeded"}, RUN_START)
    console.text_in("#errors-summary", "bad rows")
    first = console.visible("#row-errors tbody tr").find_elements(By.TAG_NAME, "td")
    line, column, reason = (cell.text for cell in first[:3])
    assert (line, column) == ("2", "District Code") and "not a number" in reason


def test_an_export_is_downloaded_with_its_checksum(console: Console,
                                                   live: stack.Stack) -> None:
    console.sign_in(live.tokens[ORG])
    new_task(console, "Export", {"form": "household-survey", "from": "2017-08-01",
                                 "to": "2017-08-31"}, reason="August survey for the ministry")
    console.text_in("#review-summary", "The task can start")
    console.find("#new-start").click()
    console.phase({"Succeeded"}, RUN_START)

    shown = console.wait(
        lambda d: (t := d.find_element(By.ID, "output-sha256").text)
        and re.fullmatch(r"[0-9a-f]{64}", t) and t, "the output's SHA-256")
    href = console.find("#output-link").get_attribute("href")
    downloaded = console.driver.execute_async_script("""
        const [href, done] = arguments;
        fetch(href, {credentials: 'same-origin'}).then(r => r.arrayBuffer())
          .then(b => crypto.subtle.digest('SHA-256', b))
          .then(d => done([...new Uint8Array(d)].map(x => x.toString(16).padStart(2, '0'))
                          .join('')))
          .catch(e => done(String(e)));
    """, href)
    assert downloaded == shown
    name = console.driver.current_url.split("#/tasks/", 1)[1]
    with bearer(live) as client:
        answer = client.get(f"/v1/tasks/{name}/output")
    assert answer.headers["longtask-output-sha256"] == shown
    console.shot("export-1280")

    console.open("#/tasks")
    console.visible(f'tr[data-task="{name}"]')
    console.shot("list-1280")
    console.shot("list-390", width=390)


def test_bulk_team_creation_clicked_through(console: Console, live: stack.Stack,
                                            tmp_path: Path) -> None:
    """Case 3: the file whose phone column is shifted ten rows is terminated and rolled
    back; the corrected one is paused, resumed and finished."""
    console.sign_in(live.tokens[ORG])
    shifted = tmp_path / "teams-shifted.csv"
    shifted.write_bytes(files.team_file(300, shift=10))
    new_task(console, "BulkTeamCreate", {"defaultRegion": "GB"}, file=shifted, rate="15",
             reason="NHS practices, first try")
    console.text_in("#review-summary", "The task can start")
    console.find("#new-start").click()
    console.wait(lambda d: d.current_url.split("#", 1)[-1].startswith("/tasks/"),
                 "the new task's page")
    wrong = console.driver.current_url.split("#/tasks/", 1)[1]
    console.phase({"Running"}, RUN_START)
    with bearer(live) as client:  # teams made with the wrong managers, then the mistake seen
        console.wait(lambda _d: (client.get(f"/v1/tasks/{wrong}").json().get("progress")
                                 or {}).get("done", 0) > 0, "a first chunk of teams", CONTROL)
    control(console, "terminate", "phones shifted ten rows", rollback="true")
    console.phase({"RolledBack"}, CONTROL)
    with bearer(live) as client:
        task = client.get(f"/v1/tasks/{wrong}").json()
    assert task["rollback"]["done"] >= task["progress"]["done"] > 0, task
    with connect(live.db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.teams WHERE task_uid = %s", (task["uid"],))
        assert cur.fetchone()[0] == 0, "no team of the shifted file is left"

    corrected = tmp_path / "teams.csv"
    corrected.write_bytes(files.team_file(300))
    new_task(console, "BulkTeamCreate", {"defaultRegion": "GB"}, file=corrected, rate="30",
             reason="NHS practices, corrected")
    console.find("#new-start").click()
    console.wait(lambda d: d.current_url.split("#", 1)[-1].startswith("/tasks/")
                 and not d.current_url.endswith(wrong), "the corrected task's page")
    name = console.driver.current_url.split("#/tasks/", 1)[1]
    console.phase({"Running"}, RUN_START)
    control(console, "pause", "checking a manager's phone")
    console.phase({"Paused"}, CONTROL)
    control(console, "resume", "the phones are right")
    console.phase({"Succeeded"}, RUN_START)
    with bearer(live) as client:
        done = client.get(f"/v1/tasks/{name}").json()
    assert done["progress"]["done"] == 300, done
