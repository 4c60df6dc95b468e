"""The operator SIGKILLed again and again during one task's whole lifecycle.

Seeded random delays put the kills at different points of each step: while the run Job is
being made, while pausing, while paused (the resume arrives while the operator is down),
while terminating and while rolling back. The operator is started again after each kill.
Whatever the points, the task must end as if nothing had happened: exactly one run Job, at
most one rollback Job, the final phase ``RolledBack`` with its rows gone, and an unbroken
chain of transition Events, each saying who asked.

``LONGTASK_CHAOS_SEEDS`` (comma-separated, default ``7``) picks the schedules; a failure
names its seed, so ``LONGTASK_CHAOS_SEEDS=<seed>`` replays the same delays.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import time
from collections.abc import Callable
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

SEEDS = [int(x) for x in os.environ.get("LONGTASK_CHAOS_SEEDS", "7").split(",") if x.strip()]
TRANSITION = re.compile(r"^(\w+) -> (\w+): ")
# Rows per second: the Karnataka file (14,859 rows) would take 30 s of running, far more
# than the run gets between its start and the terminate, so it cannot complete first.
RATE = 500
EXPECTED = [
    ("Pending", "Running", "Started"),
    ("Running", "Pausing", "PauseRequested"),
    ("Pausing", "Paused", "StoppedAtCheckpoint"),
    ("Paused", "Running", "Resumed"),
    ("Running", "Terminating", "TerminateRequested"),
    ("Terminating", "RollingBack", "RollbackStarted"),
    ("RollingBack", "RolledBack", "RolledBack"),
]


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{x}" for x in SEEDS])
def test_operator_killed_at_random_points_of_a_lifecycle_loses_nothing(
        seed: int, tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection, batch_v1: Any, namespace: str) -> None:
    rng = random.Random(seed)
    op = operator_process
    kills: list[str] = []

    def kill_after(seconds: float, where: str, meanwhile: Callable[[], None] | None = None
                   ) -> None:
        """Sleep, SIGKILL the operator, do ``meanwhile`` while it is down, start it again."""
        time.sleep(seconds)
        op.kill()
        kills.append(f"{where} +{seconds:.2f}s (phase {tasks.phase('chaos')})")
        if meanwhile is not None:
            meanwhile()
        op.start()

    def done() -> int:
        return int((s.record(db, uid) or {}).get("done") or 0)

    def context() -> str:
        return f"seed {seed}; kills: {kills}\n{op.tail()}"

    jobs = s.JobRecorder(batch_v1, namespace)
    jobs.start_and_wait()
    try:
        file_id = villages("chaos")
        uid = tasks.create("chaos", s.baseline_spec(file_id, "chaos", rate_limit=RATE))[
            "metadata"]["uid"]
        # 1. While the task is picked up and its run Job made.
        kill_after(rng.uniform(0.0, 1.0), "after create")
        s.wait_until(lambda: done() >= 500, timeout=60, what="the runner's first rows",
                     on_timeout=context)

        # 2. While pausing: the suspend may be done, half done (status written) or not yet.
        tasks.set_state("chaos", "Paused", requested_by="svc-chaos", reason="pause")
        kill_after(rng.uniform(0.0, 0.6), "after pause")
        tasks.wait_phase("chaos", "Paused", timeout=60, operator=op)
        paused_at = done()

        # 3. While paused; the resume is asked for while the operator is down.
        kill_after(rng.uniform(0.0, 0.5), "while paused", lambda: tasks.set_state(
            "chaos", "Running", requested_by="svc-chaos", reason="resume"))
        s.wait_until(lambda: done() >= paused_at + 500, timeout=60,
                     what="the resumed runner's rows", on_timeout=context)

        # 4. While terminating: the Job's deletion may be done or not yet.
        tasks.set_state("chaos", "Terminated", requested_by="svc-chaos", reason="terminate")
        kill_after(rng.uniform(0.0, 0.6), "after terminate")

        # 5. While rolling back (or, if the rollback is quick, just after it).
        tasks.wait_phase("chaos", "RollingBack", "RolledBack", "Failed", timeout=60,
                         operator=op)
        kill_after(rng.uniform(0.0, 0.4), "rolling back")
        final = tasks.wait_phase("chaos", "RolledBack", "Failed", timeout=60, operator=op)
        # A Job made by a late, repeated decision would show within a reconcile or two.
        time.sleep(2)
    finally:
        jobs.stop()

    why = context()
    status = final["status"]
    assert status["phase"] == "RolledBack", f"{status}\n{why}"
    made = jobs.modes()
    assert made.get("run") == ["lt-chaos-run"], f"exactly one run Job ever: {made}\n{why}"
    assert made.get("rollback") == ["lt-chaos-rollback"], (
        f"exactly one rollback Job ever: {made}\n{why}")
    assert s.rows_of_task(db, uid) == 0, f"the task's rows are rolled back\n{why}"
    rec = s.record(db, uid)
    assert rec is not None and rec["rollback_status"] == "succeeded", rec

    events = tasks.events("chaos")
    steps = [(m[1], m[2], e["reason"]) for e in events if (m := TRANSITION.match(e["message"]))]
    assert steps == EXPECTED, (
        f"one Event per transition, none lost or repeated: {steps}\n"
        f"all events: {[(e['reason'], e['message']) for e in events]}\n{why}")
    assert all(a[1] == b[0] for a, b in itertools.pairwise(steps))
    by_reason = {e["reason"]: e["message"] for e in events}
    for reason, asked in (("PauseRequested", "pause"), ("Resumed", "resume"),
                          ("TerminateRequested", "terminate")):
        assert f"(requested by svc-chaos: {asked})" in by_reason[reason], by_reason[reason]
    assert [e["reason"] for e in events if not TRANSITION.match(e["message"])] == [], events

    conditions = {c["type"]: c for c in status["conditions"]}
    assert {t: c["status"] for t, c in conditions.items()} == {
        "Progressing": "False", "Paused": "False", "Succeeded": "False",
        "RolledBack": "True"}, conditions
    generation = tasks.get("chaos")["metadata"]["generation"]
    assert all(c["reason"] == "RolledBack" and c["observedGeneration"] == generation
               for c in conditions.values()), conditions
    assert status["observedGeneration"] == generation
    last = status["lastAction"]
    assert (last["state"], last["requestedBy"], last["reason"]) == (
        "Terminated", "svc-chaos", "terminate"), last
    assert status["startedAt"] and status["finishedAt"], status
    assert status["rollback"]["done"] == rec["rollback_done"] > 0, status["rollback"]
    assert op.starts == 1 + len(kills) == 6, kills

