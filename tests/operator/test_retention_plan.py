"""The retention's decision (``plan``), over every phase, with no cluster or database."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from longtask.operator.retention import plan, use_of
from longtask.operator.settings import OperatorSettings
from pydantic import ValidationError

from longtask import storage
from longtask.phases import FINAL_PHASES, Phase

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
ENDED = NOW - dt.timedelta(hours=1)
DAY = 86_400.0
FILE = uuid.uuid4()


def body(phase: Phase | None, *, file_id: uuid.UUID = FILE, deleting: bool = False,
         name: str = "t") -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": str(uuid.uuid4()), "name": name, "namespace": "collect"}
    if deleting:
        meta["deletionTimestamp"] = NOW.isoformat()
    status = {} if phase is None else {"phase": str(phase),
                                       "finishedAt": ENDED.isoformat().replace("+00:00", "Z")}
    return {"metadata": meta, "spec": {"type": "BaselineUpload",
                                       "params": {"fileId": str(file_id)}}, "status": status}


def live(first_used: dt.datetime | None = None, expires: dt.datetime | None = None,
         created: dt.datetime = NOW - dt.timedelta(days=30)) -> storage.LiveFile:
    return storage.LiveFile(FILE, "acme", created, first_used, first_used, expires)


def decide(*bodies: dict[str, Any], file: storage.LiveFile | None = None) -> Any:
    uses = [u for u in map(use_of, bodies) if u is not None]
    return plan(uses, [file or live(NOW)], [], now=NOW, retention_seconds=7 * DAY,
                unused_seconds=DAY, watched=("collect",)).files[FILE]


@pytest.mark.parametrize("phase", [None, *Phase])
def test_a_file_is_kept_while_its_task_is_not_final(phase: Phase | None) -> None:
    expiry = decide(body(phase))

    if phase in FINAL_PHASES:
        assert expiry.at == ENDED + dt.timedelta(days=7), expiry
    else:
        assert expiry.at is None, f"{phase}: {expiry}"
    assert expiry.used


def test_a_final_task_being_deleted_still_keeps_its_file() -> None:
    assert decide(body(Phase.SUCCEEDED, deleting=True)).at is None


def test_one_task_that_may_resume_keeps_the_file_whatever_the_others() -> None:
    assert decide(body(Phase.FAILED), body(Phase.PAUSED, name="paused")).at is None


def test_a_file_never_used_expires_a_day_after_its_upload_or_when_the_api_said() -> None:
    created = NOW - dt.timedelta(hours=2)
    assert decide(file=live(created=created)).at == created + dt.timedelta(days=1)
    said = NOW + dt.timedelta(hours=3)
    assert decide(file=live(created=created, expires=said)).at == said
    assert not decide(file=live(created=created)).used


def test_a_file_whose_tasks_are_gone_expires_a_retention_from_now_once() -> None:
    assert decide(file=live(NOW - dt.timedelta(days=3))).at == NOW + dt.timedelta(days=7)
    earlier = NOW + dt.timedelta(days=2)
    assert decide(file=live(NOW - dt.timedelta(days=3), earlier)).at == earlier


def test_an_unused_file_retention_past_the_retention_is_refused() -> None:
    with pytest.raises(ValidationError, match="unused_file_retention_seconds"):
        OperatorSettings(runner_image="r:1", storage_retention_seconds=10,  # type: ignore[call-arg]
                         unused_file_retention_seconds=20)


def test_a_final_task_without_an_end_time_lets_its_file_expire_once_not_never() -> None:
    ended = body(Phase.SUCCEEDED)
    del ended["status"]["finishedAt"]
    first = decide(ended, file=live(NOW - dt.timedelta(days=3)))
    later = decide(ended, file=live(NOW - dt.timedelta(days=3), first.at))

    assert first.at == NOW + dt.timedelta(days=7)
    assert later.at == first.at, "a later pass keeps the expiry the first one set"
