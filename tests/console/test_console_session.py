"""Signing in and out of the console in a real browser, the session cookie's flags, the
CSRF header every unsafe request with the cookie needs, and one tenant's task unseen by
another."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import ORG, OTHER_ORG, Console, bearer
from selenium.webdriver.common.keys import Keys

from devcluster import stack

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def test_sign_in_shows_who_and_for_which_organizations_then_sign_out_ends_it(
        console: Console, live: stack.Stack) -> None:
    token = live.tokens[ORG]
    console.sign_in(token)

    assert console.find("#who-text").text == f"Signed in as {ORG}-support (operator) for {ORG}"
    cookies = {c["name"]: c for c in console.driver.get_cookies()}
    session = cookies["longtask_session"]
    assert (session["httpOnly"], session["sameSite"], session["path"]) == (True, "Strict", "/")
    assert session["secure"] is False          # plain http on loopback; https sets it
    assert token not in session["value"]
    kept = console.driver.execute_script(
        "return JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage),"
        " document.cookie, location.href])")
    assert token not in kept and "longtask_session" not in json.loads(kept)[2]

    console.find("#sign-out").click()
    console.visible("#signin-form")
    assert "longtask_session" not in {c["name"] for c in console.driver.get_cookies()}
    assert console.fetch("/console/session")["status"] == 401
    assert console.fetch("/v1/tasks")["status"] == 401


def test_a_wrong_token_is_refused_and_sets_no_cookie(console: Console) -> None:
    console.open()
    console.visible("#token").send_keys("not-a-token-anyone-holds")
    console.find("#signin-form button[type=submit]").click()

    console.visible("#signin-refused")
    assert console.find("#who").is_displayed() is False
    assert console.driver.get_cookies() == []
    assert console.fetch("/v1/tasks")["status"] == 401


def test_an_unsafe_request_with_the_cookie_needs_the_csrf_header(
        console: Console, live: stack.Stack) -> None:
    console.sign_in(live.tokens[ORG])
    with bearer(live) as client:
        made = client.post("/v1/tasks", json={
            "type": "Export", "organization": ORG, "state": "Paused",
            "params": {"form": "household-survey", "from": "2017-08-01", "to": "2017-08-02"}})
        assert made.status_code == 201, made.text
    name = made.json()["name"]
    resume = f"/v1/tasks/{name}/resume"
    body = json.dumps({"reason": "resumed by the console"})
    kinds = {"Content-Type": "application/json"}

    refused = console.fetch(resume, "POST", kinds, body)
    wrong = console.fetch(resume, "POST", {**kinds, "X-CSRF-Token": "guessed"}, body)
    sign_out = console.fetch("/console/session", "DELETE")
    with bearer(live) as client:
        untouched = client.get(f"/v1/tasks/{name}").json()
    csrf = json.loads(console.fetch("/console/session")["text"])["csrfToken"]
    accepted = console.fetch(resume, "POST", {**kinds, "X-CSRF-Token": csrf}, body)

    assert (refused["status"], wrong["status"], sign_out["status"]) == (403, 403, 403)
    assert json.loads(refused["text"])["type"].endswith("/csrf-token-mismatch")
    assert untouched["state"] == "Paused"
    assert accepted["status"] == 202, accepted["text"]
    assert json.loads(accepted["text"])["state"] == "Running"
    assert json.loads(accepted["text"])["requestedBy"] == f"{ORG}-support"
    with bearer(live) as client:                # a bearer token needs no header
        assert client.post(f"/v1/tasks/{name}/pause",
                           json={"reason": "by the token"}).status_code == 202


def test_a_sign_in_posted_from_another_origin_is_refused(live: stack.Stack) -> None:
    answer = httpx.post(f"{live.api_url}/console/session", data={"token": live.tokens[ORG]},
                        headers={"Origin": "https://elsewhere.example"}, timeout=30)
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


def test_another_organizations_task_is_neither_listed_nor_shown(
        console: Console, live: stack.Stack) -> None:
    with bearer(live, OTHER_ORG) as other, bearer(live) as own:
        theirs = other.post("/v1/tasks", json={
            "type": "Export", "organization": OTHER_ORG, "state": "Paused",
            "params": {"form": "household-survey", "from": "2017-08-01", "to": "2017-08-03"}})
        mine = own.post("/v1/tasks", json={
            "type": "Export", "organization": ORG, "state": "Paused",
            "params": {"form": "household-survey", "from": "2017-08-01", "to": "2017-08-03"}})
        assert theirs.status_code == mine.status_code == 201, (theirs.text, mine.text)
    console.sign_in(live.tokens[ORG])

    console.open("#/tasks")
    console.visible(f'tr[data-task="{mine.json()["name"]}"]')
    rows = console.driver.execute_script(
        "return [...document.querySelectorAll('#task-table tbody tr')]"
        ".map(r => r.dataset.task)")
    assert theirs.json()["name"] not in rows
    organizations = console.driver.execute_script(
        "return [...document.querySelectorAll('#filter-organization option')].map(o => o.value)")
    assert organizations == ["", ORG]

    console.open(f"#/tasks/{theirs.json()['name']}")
    console.text_in("#task-words", "No such task")
    console.text_in("#alert", "does not exist")
    listed = console.fetch(f"/v1/tasks?organization={OTHER_ORG}")
    assert listed["status"] == 200 and json.loads(listed["text"])["items"] == []


def test_signing_in_and_a_control_dialog_work_from_the_keyboard_and_every_field_is_labelled(
        console: Console, live: stack.Stack) -> None:
    with bearer(live) as client:
        made = client.post("/v1/tasks", json={
            "type": "Export", "organization": ORG, "state": "Paused",
            "params": {"form": "household-survey", "from": "2017-08-04", "to": "2017-08-05"}})
        assert made.status_code == 201, made.text
    console.open()
    console.visible("#token")
    active = console.driver.switch_to.active_element
    assert active.get_attribute("id") == "token", "the sign-in page puts focus on the token"
    active.send_keys(live.tokens[ORG], Keys.ENTER)
    console.visible("#who")

    console.open(f"#/tasks/{made.json()['name']}")
    console.text_in("#task-title", made.json()["name"])
    console.visible("#task-phase")
    pause = console.find('[data-action="pause"]')
    pause.send_keys(Keys.ENTER)
    console.visible("#control-dialog")
    assert console.driver.switch_to.active_element.get_attribute("id") == "control-reason"
    console.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    console.wait(lambda d: not d.find_element("id", "control-dialog").is_displayed(),
                 "Escape to close the dialog")
    assert console.driver.switch_to.active_element.get_attribute("data-action") == "pause"

    unlabelled = console.driver.execute_script("""
        return [...document.querySelectorAll('input, select, textarea, progress')]
          .filter(e => e.type !== 'radio' && !(e.labels && e.labels.length)
                       && !e.getAttribute('aria-label'))
          .map(e => e.id || e.outerHTML.slice(0, 80));""")
    assert unlabelled == []
