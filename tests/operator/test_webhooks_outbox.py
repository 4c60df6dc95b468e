"""The webhooks' file, outbox and sender, against the real PostgreSQL (as the operator's own
role) and real HTTP receivers on loopback; the operator's end-to-end run is in
tests/operator_cluster/test_webhooks_delivery.py."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import psycopg2.extensions
import pytest
import yaml
from longtask.operator.settings import OperatorSettings
from longtask.operator.webhooks import (
    EVENT_TYPE,
    Notification,
    WebhookConfigError,
    WebhookFile,
    Webhooks,
    backoff,
    parse,
    phase_changed,
)

from devcluster.receiver import Receiver, new_secret
from longtask.db import Pool
from longtask.phases import Phase

pytestmark = pytest.mark.timeout(60)


def write_file(path: Path, endpoints: dict[str, Receiver]) -> Path:
    """The webhooks file for ``endpoints`` (organization -> receiver)."""
    path.write_text(yaml.safe_dump({"webhooks": [
        {"organization": org, "url": r.url, "secret": r.secret}
        for org, r in endpoints.items()]}))
    return path


def notification(org: str, task_uid: str, previous: Phase, phase: Phase) -> Notification:
    body = {"metadata": {"namespace": "collect", "name": f"task-{task_uid[:8]}",
                         "uid": task_uid}}
    return phase_changed(event_id=f"{task_uid}.{previous}.{phase}", body=body,
                         organization=org, task_type="Export", previous=previous,
                         phase=phase, reason=str(phase), message=None,
                         progress={"done": 3, "total": 10},
                         at=dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC))


@pytest.fixture
def settings_for(tmp_path: Path) -> Any:
    def make(endpoints: dict[str, Receiver], **extra: Any) -> OperatorSettings:
        return OperatorSettings(
            runner_image="longtask-runner:test",
            webhooks_file=write_file(tmp_path / "webhooks.yaml", endpoints),
            webhook_timeout_seconds=1.0, webhook_retry_cap_seconds=1.0, **extra)
    return make


@pytest.fixture
def pool(operator_db_url: str) -> Iterator[Pool]:
    p = Pool(operator_db_url, 4, application_name="test-webhooks")
    yield p
    p.close()


def outbox(db: psycopg2.extensions.connection) -> list[dict[str, Any]]:
    with db.cursor() as cur:
        cur.execute("SELECT event_id, organization, attempts, last_error, delivered_at, "
                    "failed_at FROM longtask.notifications ORDER BY id")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    db.commit()
    return rows


def passes(webhooks: Webhooks, count: int) -> None:
    with (httpx.Client(timeout=webhooks.settings.webhook_timeout_seconds) as client,
          ThreadPoolExecutor(webhooks.settings.webhook_workers) as threads):
        for _ in range(count):
            webhooks.run_once(client, threads)


# ------------------------------------------------------------------------------ the file

def test_a_bad_entry_is_refused_naming_the_file_the_entry_and_the_field(tmp_path: Path) -> None:
    good = {"organization": "acme", "url": "https://hooks.acme.example/lt",
            "secret": new_secret()}
    cases = {
        "url": [{**good, "url": "ftp://x"}],
        "secret": [{**good, "secret": "whsec_***"}],
        "twice": [good, good],
        "phases": [{**good, "phases": ["Finished"]}],
        "extra": [{**good, "token": "x"}],
    }
    for what, entries in cases.items():
        with pytest.raises(WebhookConfigError) as refused:
            parse(yaml.safe_dump({"webhooks": entries}), "webhooks.yaml")
        message = str(refused.value)
        assert message.startswith("webhooks.yaml: webhooks[") and "(acme)" in message, message
        assert {"url": "url", "secret": "secret", "twice": "named twice",
                "phases": "phases", "extra": "token"}[what] in message, message
    with pytest.raises(WebhookConfigError, match="not YAML"):
        parse("webhooks: [", "w.yaml")
    with pytest.raises(WebhookConfigError, match="list 'webhooks'"):
        parse("hooks: []", "w.yaml")
    endpoints = parse(yaml.safe_dump({"webhooks": [{**good, "phases": ["Succeeded"]}]}), "w")
    assert endpoints["acme"].wants(Phase.SUCCEEDED) and not endpoints["acme"].wants(Phase.RUNNING)
    assert good["secret"] not in repr(endpoints["acme"]), "the secret is kept out of logs"


def test_a_file_broken_after_start_keeps_the_endpoints_last_read(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.yaml"
    path.write_text(yaml.safe_dump({"webhooks": [
        {"organization": "acme", "url": "http://127.0.0.1:1/a", "secret": new_secret()}]}))
    file = WebhookFile(path)
    assert set(file.endpoints()) == {"acme"}
    path.write_text("webhooks: [")
    assert set(file.endpoints()) == {"acme"}, "a typo drops no organization's webhooks"
    path.write_text(yaml.safe_dump({"webhooks": [
        {"organization": "globex", "url": "http://127.0.0.1:1/g", "secret": new_secret()}]}))
    assert set(file.endpoints()) == {"globex"}, "a fixed file is read again"
    path.write_text("webhooks: [")
    with pytest.raises(WebhookConfigError, match="not YAML"):
        WebhookFile(path)  # an operator does not start with a broken file


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    rng = random.Random(1)
    for attempts in range(1, 20):
        ceiling = min(60.0, 2.0 ** (attempts - 1))
        delays = [backoff(attempts, cap=60.0, rng=rng) for _ in range(200)]
        assert all(0.5 <= d <= max(0.5, ceiling) for d in delays), (attempts, max(delays))
    spread = [backoff(10, cap=60.0, rng=rng) for _ in range(200)]
    assert max(spread) - min(spread) > 30, "full jitter spreads the retries"


# ------------------------------------------------------------------- outbox and sender

def test_each_notification_is_written_once_and_sent_signed_in_order(
        settings_for: Any, pool: Pool, db: psycopg2.extensions.connection) -> None:
    with Receiver() as acme:
        webhooks = Webhooks(settings_for({"acme": acme}), pool)
        task = str(uuid.uuid4())
        steps = [(Phase.PENDING, Phase.RUNNING), (Phase.RUNNING, Phase.PAUSING),
                 (Phase.PAUSING, Phase.PAUSED), (Phase.PAUSED, Phase.RUNNING)]
        for previous, phase in steps:
            assert webhooks.enqueue(notification("acme", task, previous, phase))
        assert not webhooks.enqueue(notification("acme", task, *steps[0])), \
            "a decision repeated after a crash writes no second row"
        passes(webhooks, len(steps))

        got = acme.accepted()
        assert [r.data["phase"] for r in got if r.data] == ["Running", "Pausing", "Paused",
                                                            "Running"], got
        assert all(r.verified for r in got), "every request carries a valid signature"
        first = got[0]
        assert first.attributes is not None and first.data is not None
        assert first.attributes["type"] == EVENT_TYPE
        assert first.attributes["specversion"] == "1.0"
        assert first.attributes["id"] == first.headers["webhook-id"] == f"{task}.Pending.Running"
        assert first.attributes["source"].endswith(f"/namespaces/collect/longtasks/task-{task[:8]}")
        assert first.headers["content-type"] == "application/json"
        assert first.data == {"organization": "acme", "namespace": "collect",
                              "task": f"task-{task[:8]}", "uid": task, "type": "Export",
                              "previousPhase": "Pending", "phase": "Running",
                              "reason": "Running", "message": None,
                              "progress": {"done": 3, "total": 10}}
    rows = outbox(db)
    assert [(r["attempts"], r["delivered_at"] is not None) for r in rows] == [(1, True)] * 4


def test_a_refused_notification_is_retried_and_holds_back_its_task_only(
        settings_for: Any, pool: Pool, db: psycopg2.extensions.connection) -> None:
    with Receiver(status=503) as acme:
        webhooks = Webhooks(settings_for({"acme": acme}), pool)
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        webhooks.enqueue(notification("acme", first, Phase.PENDING, Phase.RUNNING))
        webhooks.enqueue(notification("acme", first, Phase.RUNNING, Phase.SUCCEEDED))
        passes(webhooks, 1)
        rows = outbox(db)
        assert (rows[0]["attempts"], rows[0]["last_error"], rows[1]["attempts"]) == (
            1, "HTTP 503", 0), "the task's next change waits for the one refused"
        acme.status = 200
        webhooks.enqueue(notification("acme", second, Phase.PENDING, Phase.RUNNING))
        deadline = dt.datetime.now() + dt.timedelta(seconds=20)
        while any(r["delivered_at"] is None for r in outbox(db)):
            assert dt.datetime.now() < deadline, outbox(db)
            passes(webhooks, 1)
            webhooks.wait(0.2)
        phases_of_first = [r.data["phase"] for r in acme.accepted()
                           if r.data and r.data["uid"] == first]
        assert phases_of_first == ["Running", "Succeeded"], acme.all()


def test_an_endpoint_that_never_answers_is_given_up_after_the_last_attempt(
        settings_for: Any, pool: Pool, db: psycopg2.extensions.connection) -> None:
    with Receiver(status=500) as acme:
        webhooks = Webhooks(settings_for({"acme": acme}, webhook_max_attempts=3), pool)
        task = str(uuid.uuid4())
        webhooks.enqueue(notification("acme", task, Phase.PENDING, Phase.RUNNING))
        webhooks.enqueue(notification("acme", task, Phase.RUNNING, Phase.FAILED))
        deadline = dt.datetime.now() + dt.timedelta(seconds=30)
        while outbox(db)[0]["failed_at"] is None:
            assert dt.datetime.now() < deadline, outbox(db)
            passes(webhooks, 1)
            webhooks.wait(0.2)
        rows = outbox(db)
        assert (rows[0]["attempts"], rows[0]["last_error"]) == (3, "HTTP 500"), rows
        assert len(acme.all()) >= 3
        acme.status = 200
        passes(webhooks, 1)
        assert outbox(db)[1]["delivered_at"] is not None, "the task's next change goes on"


def test_a_slow_organization_delays_no_other(
        settings_for: Any, pool: Pool, db: psycopg2.extensions.connection) -> None:
    with Receiver(delay=3.0) as slow, Receiver() as fast:
        webhooks = Webhooks(settings_for({"slow": slow, "fast": fast}, webhook_workers=2,
                                         webhook_per_organization=1), pool)
        for _ in range(20):
            webhooks.enqueue(notification("slow", str(uuid.uuid4()), Phase.PENDING,
                                          Phase.RUNNING))
        webhooks.enqueue(notification("fast", str(uuid.uuid4()), Phase.PENDING, Phase.RUNNING))
        passes(webhooks, 1)
        assert len(fast.accepted()) == 1, "the other organization is served in the same pass"
        rows = outbox(db)
        slow_rows = [r for r in rows if r["organization"] == "slow"]
        assert sum(r["attempts"] for r in slow_rows) == 1, "one slow attempt a pass, not 20"
        tried = next(r for r in slow_rows if r["attempts"])
        assert tried["last_error"].startswith("ReadTimeout"), slow_rows


def test_an_organization_without_a_webhook_writes_nothing(
        settings_for: Any, pool: Pool, db: psycopg2.extensions.connection) -> None:
    with Receiver() as acme:
        webhooks = Webhooks(settings_for({"acme": acme}), pool)
        assert webhooks.wants("acme", Phase.RUNNING)
        assert not webhooks.wants("globex", Phase.RUNNING)
    off = Webhooks(OperatorSettings(runner_image="longtask-runner:test"), pool)
    assert off.file is None and not off.wants("acme", Phase.RUNNING)
