"""Deleting a LongTask stops its runner and lets it go once no pod and no Job of it is left;
deleting is not undoing, so its rows stay (operator/README.md)."""

from __future__ import annotations

from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest
from kubernetes.client.exceptions import ApiException

from longtask.constants import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def test_a_deleted_task_stops_its_runner_and_goes_once_its_jobs_are_gone(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    uid = s.start_slow(tasks, operator_process, db, "deleted", villages("deleted"))

    tasks.custom.delete_namespaced_custom_object(GROUP, VERSION, tasks.namespace, PLURAL,
                                                 "deleted")

    def gone() -> bool:
        try:
            tasks.get("deleted")
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    s.wait_until(gone, timeout=60, what="the LongTask to be gone",
                 on_timeout=operator_process.tail)
    assert tasks.jobs(uid) == [] and tasks.pods(uid) == [], "no Job and no pod left"
    rec = s.record(db, uid)
    assert rec is not None and rec["run_status"] == "stopped", rec
    assert s.rows_of_task(db, uid) == rec["done"] - rec["row_errors"] > 0, "rows stay"
