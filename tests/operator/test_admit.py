"""Concurrency-key admission: one task per key at a time, oldest first."""

from __future__ import annotations

import datetime as dt

from longtask.operator.decide import KeyMember, admit, key_queue

from longtask.phases import DesiredState, Phase

T0 = dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC)


def member(
    name: str,
    minute: int = 0,
    phase: Phase | None = None,
    state: DesiredState = DesiredState.RUNNING,
    started: bool = False,
) -> KeyMember:
    return KeyMember(name, T0 + dt.timedelta(minutes=minute), phase, state, started)


def test_oldest_waiting_task_is_admitted_when_the_key_is_free() -> None:
    waiting = [member("second", 2), member("first", 1), member("third", 3)]
    assert admit(waiting, []) == ["first"]


def test_nobody_is_admitted_while_the_key_is_held() -> None:
    holder = member("running", 0, Phase.RUNNING, started=True)
    assert admit([member("next", 1)], [holder]) == []


def test_equal_creation_times_are_ordered_by_name() -> None:
    assert admit([member("b", 1), member("a", 1)], []) == ["a"]


def test_only_one_task_is_admitted_at_a_time() -> None:
    got = admit([member(f"t{i}", i) for i in range(5)], [])
    assert len(got) == 1, got


def test_a_paused_task_keeps_its_key() -> None:
    queue = key_queue(
        [member("paused", 0, Phase.PAUSED, DesiredState.PAUSED, started=True), member("next", 1)]
    )
    assert (queue.admitted, [h.name for h in queue.holders]) == ((), ["paused"])


def test_a_task_rolling_back_keeps_its_key_until_rolled_back() -> None:
    rolling = member("wrong-file", 0, Phase.ROLLING_BACK, DesiredState.TERMINATED, started=True)
    done = member("wrong-file", 0, Phase.ROLLED_BACK, DesiredState.TERMINATED, started=True)
    fixed = member("fixed-file", 1)
    got = (key_queue([rolling, fixed]).admitted, key_queue([done, fixed]).admitted)
    assert got == ((), ("fixed-file",)), got


def test_a_task_paused_before_its_start_neither_holds_nor_waits() -> None:
    paused = member("paused-early", 0, Phase.PAUSED, DesiredState.PAUSED, started=False)
    queue = key_queue([paused, member("later", 5)])
    assert (queue.holders, queue.admitted) == ((), ("later",)), queue


def test_a_resumed_task_paused_before_start_keeps_its_place() -> None:
    resumed = member("early", 0, Phase.PAUSED, DesiredState.RUNNING, started=False)
    queue = key_queue([member("later", 5, Phase.QUEUED), resumed])
    assert queue.admitted == ("early",), queue.admitted


def test_a_task_whose_job_exists_holds_the_key_whatever_its_status_says() -> None:
    """A lost status write must not let a second task start under the same key."""
    lost = member("lost-status", 0, None, started=True)
    assert key_queue([lost, member("next", 1)]).admitted == ()


def test_final_tasks_free_the_key() -> None:
    finished = [
        member(p.value, i, p, started=True)
        for i, p in enumerate([Phase.SUCCEEDED, Phase.FAILED, Phase.TERMINATED])
    ]
    assert key_queue([*finished, member("next", 9)]).admitted == ("next",)


def test_queue_position_counts_from_one_oldest_first() -> None:
    holder = member("holder", 0, Phase.RUNNING, started=True)
    queue = key_queue([member("c", 3), holder, member("a", 1), member("b", 2)])
    got = [queue.position(n) for n in ("a", "b", "c", "holder")]
    assert got == [1, 2, 3, None], got
