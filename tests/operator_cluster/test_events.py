"""Every transition is a Kubernetes Event on the LongTask; a control action's Event says who
asked and why when the request carried the annotations (longtask/constants.py)."""

from __future__ import annotations

import itertools
import re
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]

TRANSITION = re.compile(r"^(\w+) -> (\w+): ")


def test_each_transition_has_an_event_and_control_actions_say_who_and_why(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection) -> None:
    s.start_slow(tasks, operator_process, db, "told", villages("told"))
    tasks.set_state("told", "Paused", requested_by="svc-support", reason="columns swapped")
    tasks.wait_phase("told", "Paused", timeout=30, operator=operator_process)
    tasks.set_state("told", "Running", requested_by="svc-support", reason="checked, go on")
    tasks.wait_phase("told", "Running", timeout=30, operator=operator_process)
    tasks.set_state("told", "Terminated", requested_by="svc-pipeline", reason="wrong file")
    tasks.wait_phase("told", "RolledBack", timeout=60, operator=operator_process)

    events = tasks.events("told")
    steps = [m.groups() for e in events if (m := TRANSITION.match(e["message"]))]
    chain = [steps[0][0]] + [to for _from, to in steps]
    assert chain == ["Pending", "Running", "Pausing", "Paused", "Running", "Terminating",
                     "RollingBack", "RolledBack"], chain
    assert all(a[1] == b[0] for a, b in itertools.pairwise(steps)), (
        f"each Event starts where the last one ended: {steps}")
    by_reason = {e["reason"]: e for e in events}
    assert "(requested by svc-support: columns swapped)" in by_reason["PauseRequested"][
        "message"], by_reason["PauseRequested"]["message"]
    assert "(requested by svc-support: checked, go on)" in by_reason["Resumed"]["message"]
    assert "(requested by svc-pipeline: wrong file)" in by_reason["TerminateRequested"][
        "message"], by_reason["TerminateRequested"]["message"]
    assert all(e["source"]["component"] == "longtask-operator" for e in events)
    assert all(e["involvedObject"]["kind"] == "LongTask" for e in events)
    last = tasks.get("told")["status"]["lastAction"]
    assert (last["state"], last["requestedBy"], last["reason"]) == (
        "Terminated", "svc-pipeline", "wrong file"), last
