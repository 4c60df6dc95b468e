"""Concurrency keys: which task of a key may start (oldest first, one at a time)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from longtask.phases import (
    DesiredState,
    Phase,
)


@dataclass(frozen=True)
class KeyMember:
    """One LongTask sharing a concurrency key, as the admission sees it.

    ``started``: ``status.startedAt`` is set or the task's run Job exists (the handler must
    check both, so a task whose status write was lost still counts as a holder).
    """

    name: str
    created_at: dt.datetime
    phase: Phase | None
    state: DesiredState
    started: bool

    @property
    def holds_key(self) -> bool:
        """Started and not final: running, pausing, paused, terminating or rolling back."""
        return self.started and not (self.phase is not None and self.phase.is_final)

    @property
    def waiting(self) -> bool:
        """Not started, not final, and asked to run (a task paused before its start is not)."""
        final = self.phase is not None and self.phase.is_final
        return not self.started and not final and self.state is DesiredState.RUNNING


@dataclass(frozen=True)
class KeyQueue:
    """The tasks of one key: who holds it, who waits (oldest first), who is next."""

    holders: tuple[KeyMember, ...]
    waiting: tuple[KeyMember, ...]
    admitted: tuple[str, ...]

    def position(self, name: str) -> int | None:
        """1-based place of ``name`` among the waiting tasks, ``None`` if it is not waiting."""
        names = [m.name for m in self.waiting]
        return names.index(name) + 1 if name in names else None


def admit(waiting: Sequence[KeyMember], holders: Sequence[KeyMember]) -> list[str]:
    """Names to admit under one key: the oldest waiting task when nobody holds the key.

    Oldest is by ``creationTimestamp``, then name (timestamps have one-second precision).
    At most one name: tasks sharing a key run one at a time.
    """
    if holders or not waiting:
        return []
    return [min(waiting, key=lambda m: (m.created_at, m.name)).name]


def key_queue(members: Iterable[KeyMember]) -> KeyQueue:
    """Sort one key's members into holders and waiting tasks, and apply :func:`admit`."""
    members = list(members)
    holders = tuple(m for m in members if m.holds_key)
    waiting = tuple(sorted((m for m in members if m.waiting), key=lambda m: (m.created_at, m.name)))
    return KeyQueue(holders, waiting, tuple(admit(waiting, holders)))
