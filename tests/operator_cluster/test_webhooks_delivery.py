"""Webhooks through the real operator: a task's phase changes reach its organization's
endpoint, signed and in order, at least once across an operator killed while its endpoint
refused them; another organization's endpoint hears nothing of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest
import yaml

from devcluster.kube import KubeCluster
from devcluster.kube import wait_for as wait_until
from devcluster.receiver import Receiver

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def outbox(db: psycopg2.extensions.connection, uid: str) -> list[dict[str, Any]]:
    with db.cursor() as cur:
        cur.execute("SELECT event_id, data->>'phase', attempts, delivered_at IS NOT NULL "
                    "FROM longtask.notifications WHERE task_uid = %s ORDER BY id", (uid,))
        rows = [{"id": r[0], "phase": r[1], "attempts": r[2], "sent": r[3]}
                for r in cur.fetchall()]
    db.commit()
    return rows


def test_phase_changes_reach_the_organization_signed_in_order_across_a_restart(
        kube_cluster: KubeCluster, namespace: str, operator_db_url: str, tasks: s.Tasks,
        villages: Any, db: psycopg2.extensions.connection, tmp_path: Path) -> None:
    with Receiver(status=503) as acme, Receiver() as globex:
        webhooks = tmp_path / "webhooks.yaml"
        webhooks.write_text(yaml.safe_dump({"webhooks": [
            {"organization": s.ORG, "url": acme.url, "secret": acme.secret},
            {"organization": "globex", "url": globex.url, "secret": globex.secret}]}))
        operator = s.OperatorProcess(kube_cluster, namespace, operator_db_url,
                                     tmp_path / "operator.log", extra_env={
                                         "LONGTASK_OPERATOR_WEBHOOKS_FILE": str(webhooks),
                                         "LONGTASK_OPERATOR_WEBHOOK_INTERVAL_SECONDS": "0.2",
                                         "LONGTASK_OPERATOR_WEBHOOK_RETRY_CAP_SECONDS": "1"})
        operator.start()
        try:
            file_id = villages("villages")
            uid = tasks.create("villages", s.baseline_spec(file_id, "villages",
                                                            rate_limit=4000))["metadata"]["uid"]
            seen = tasks.watch_phases("villages", {"Succeeded", "Failed"}, timeout=90,
                                      operator=operator)
            assert seen[-1] == "Succeeded", seen
            # Every change was offered and refused so far: nothing is sent.
            wait_until(lambda: (rows := outbox(db, uid)) and rows[0]["attempts"] >= 2,
                       timeout=20, what="the endpoint's refusals to be retried",
                       on_timeout=lambda: f"{outbox(db, uid)}\n{operator.tail()}")
            assert not any(r["sent"] for r in outbox(db, uid))
            operator.kill()
            acme.status = 200
            operator.start()
            wait_until(lambda: all(r["sent"] for r in outbox(db, uid)), timeout=60,
                       what="every notification to be sent after the restart",
                       on_timeout=lambda: f"{outbox(db, uid)}\n{operator.tail()}")
        finally:
            operator.stop()

        rows = outbox(db, uid)
        phases = [r["phase"] for r in rows]
        assert phases[-1] == "Succeeded" and phases == [p for p in seen if p in phases], (
            phases, seen)
        assert len(set(phases)) == len(phases), "each change once in the outbox"
        refused = [r for r in acme.all() if r.status == 503]
        assert refused, "the endpoint was offered the changes before the restart"
        accepted = acme.accepted()
        first_receipt: list[str] = []
        for request in accepted:
            assert request.verified, request.headers
            assert request.data is not None and request.data["uid"] == uid
            if request.headers["webhook-id"] not in first_receipt:
                first_receipt.append(request.headers["webhook-id"])
        assert first_receipt == [r["id"] for r in rows], "at least once, in the task's order"
        assert accepted[-1].data is not None
        assert accepted[-1].data["progress"]["percent"] == 100, accepted[-1].data
        assert globex.all() == [], "another organization hears nothing of acme's task"
