"""The storage retention runs in the operator's leader: two elected replicas, a baseline
upload run to success by the real runner, and its file removed a second after the task
ended (retention made short by the settings), by the replica holding the Lease only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

from devcluster.kube import KubeCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(200)]

RETENTION_ENV = {
    "LONGTASK_OPERATOR_STORAGE_RETENTION_SECONDS": "1",
    "LONGTASK_OPERATOR_UNUSED_FILE_RETENTION_SECONDS": "1",
    "LONGTASK_OPERATOR_RETENTION_INTERVAL_SECONDS": "0.5",
    "LONGTASK_OPERATOR_RETENTION_CLAIM_GRACE_SECONDS": "0",
}


@pytest.fixture
def two_replicas(kube_cluster: KubeCluster, namespace: str, db_url: str, tasks: s.Tasks,
                 tmp_path: Path) -> Iterator[list[s.OperatorProcess]]:
    """Two elected operators with a 1 s retention, not started; stopped afterwards."""
    ops = [s.OperatorProcess(kube_cluster, namespace, db_url, tmp_path / f"operator-{i}.log",
                             extra_env={"LONGTASK_OPERATOR_STANDALONE": "false",
                                        "LONGTASK_OPERATOR_LEASE_NAMESPACE": namespace,
                                        **RETENTION_ENV})
           for i in range(2)]
    try:
        yield ops
    finally:
        for op in ops:
            op.stop()


def removal(db: psycopg2.extensions.connection, file_id: Any) -> dict[str, Any] | None:
    with db.cursor() as cur:
        cur.execute("SELECT kind, organization, bytes, reason, removed_at "
                    "FROM longtask.storage_removals WHERE object_id = %s", (file_id,))
        row = cur.fetchone()
    return dict(zip(("kind", "organization", "bytes", "reason", "removed_at"), row,
                    strict=True)) if row else None


def test_the_leader_removes_a_file_after_its_task_ended_and_the_standby_never_does(
        tasks: s.Tasks, two_replicas: list[s.OperatorProcess], villages: Any,
        db: psycopg2.extensions.connection) -> None:
    # The task exists before any operator: the first pass already sees the file in use.
    file_id = villages("villages")
    tasks.create("villages", s.baseline_spec(file_id, "villages", rate_limit=4000))
    for op in two_replicas:
        op.start()

    tasks.wait_phase("villages", "Succeeded", timeout=120)
    finished = dt.datetime.fromisoformat(
        tasks.get("villages")["status"]["finishedAt"].replace("Z", "+00:00"))
    removed = s.wait_until(lambda: removal(db, file_id), timeout=30, interval=0.2,
                           what="the file's removal",
                           on_timeout=lambda: "\n".join(op.tail(20) for op in two_replicas))

    assert (removed["kind"], removed["organization"]) == ("file", s.ORG), removed
    assert removed["bytes"] > 0 and "villages" in removed["reason"], removed
    assert removed["removed_at"] >= finished + dt.timedelta(seconds=1), (
        f"removed at {removed['removed_at']}, the task ended at {finished}")
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM longtask.file_blocks WHERE file_id = %s", (file_id,))
        assert cur.fetchone()[0] == 0  # type: ignore[index]
    leader = [op for op in two_replicas if op.log_events("lease_acquired")]
    assert len(leader) == 1, [op.log_path.name for op in leader]
    standby = next(op for op in two_replicas if op is not leader[0])
    removals_logged = leader[0].log_events("storage_removed")
    assert [e["id"] for e in removals_logged] == [str(file_id)], removals_logged
    assert leader[0].log_events("retention_started"), leader[0].tail(20)
    assert standby.log_events("retention_started") == [], standby.tail(20)
    assert standby.log_events("storage_removed") == [], standby.tail(20)
