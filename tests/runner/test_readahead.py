"""The reading thread's hand-over (ReadAhead): nothing is made after a close or a stop."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
from longtask.runner.engine import Stopped, StopToken
from longtask.runner.tasks.common import ReadAhead


def counting(made: list[int], waiting: threading.Event) -> Iterator[int]:
    """0, 1, 2, ... noting each item as it is made; ``waiting`` once item 2 is made (with
    depth 1 and item 0 taken, item 1 fills the queue and item 2 waits to go in)."""
    for i in itertools.count():
        made.append(i)
        if i == 2:
            waiting.set()
        yield i


@pytest.mark.timeout(30)
def test_a_close_makes_no_further_item() -> None:
    made: list[int] = []
    waiting = threading.Event()
    ahead = ReadAhead(counting(made, waiting), StopToken(), depth=1)
    assert ahead.next() == 0
    assert waiting.wait(5)
    time.sleep(0.1)  # the thread now waits to put item 2
    ahead.close()
    assert made == [0, 1, 2], "an item was made after close()"


@pytest.mark.timeout(30)
def test_a_stop_ends_the_thread_and_the_next_take() -> None:
    made: list[int] = []
    waiting = threading.Event()
    stop = StopToken()
    ahead = ReadAhead(counting(made, waiting), stop, depth=1)
    assert ahead.next() == 0
    assert waiting.wait(5)
    stop.request("test", cancel=False)
    with pytest.raises(Stopped):
        ahead.next()
    ahead.close()
    assert made == [0, 1, 2], "an item was made after the stop"
