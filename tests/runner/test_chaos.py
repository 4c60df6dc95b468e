"""The runner's contract under stops, kills, restarts and a second runner (real processes).

A 100,000-row upload is interrupted at random by SIGTERM and SIGKILL and restarted each
time; the result must equal an uninterrupted run, and no chunk may have been committed
after a SIGTERM arrived (a commit already requested may complete).
"""

from __future__ import annotations

import dataclasses
import random
import signal
import time
import uuid
from pathlib import Path

import pytest
import runner_support as s

from longtask import constants, taskrecord

ROWS = 100_000


def big_baseline(real_data: Path, rows: int = ROWS) -> bytes:
    """``rows`` village records with a unique ``external_id``, built from the real file."""
    lines = (real_data / "29-karnataka-constituency.csv").read_bytes().decode().splitlines()
    header, body = lines[0], lines[1:]
    out = [f"external_id,{header}"]
    for i in range(rows):
        out.append(f"V{i:07d},{body[i % len(body)]}")
    return ("\n".join(out) + "\n").encode()


def make_form(db, header: str, name: str) -> None:  # type: ignore[no-untyped-def]
    org_id = s.org_id(db, "acme")
    fields = [(n, "integer" if n.endswith(" Code") and "Census" not in n and n != "Village Code"
               else "text", False) for n in header.split(",")[1:]]
    s.create_form(db, org_id, name, fields)


def form_checksum(db, form: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute(
            "SELECT count(*), md5(string_agg(b.external_id || b.data::text, '|' "
            "ORDER BY b.external_id)) FROM collect.baseline_records b "
            "JOIN collect.forms f ON f.id = b.form_id WHERE f.name = %s", (form,))
        count, digest = cur.fetchone()
    return int(count), str(digest)


def chunks_after(db, uid: uuid.UUID, instant: float) -> list[tuple[int, float]]:  # type: ignore[no-untyped-def]
    """Chunks whose commit was requested after ``instant`` (seconds since the epoch)."""
    with db.cursor() as cur:
        cur.execute(
            "SELECT seq, extract(epoch FROM commit_requested_at)::float8 FROM longtask.chunks "
            "WHERE task_uid = %s AND commit_requested_at > to_timestamp(%s)", (uid, instant))
        return [(int(a), float(b)) for a, b in cur.fetchall()]


@pytest.fixture
def uploads(db, db_url, real_data):  # type: ignore[no-untyped-def]
    data = big_baseline(real_data)
    s.create_org(db)
    header = data.split(b"\n", 1)[0].decode()
    make_form(db, header, "reference")
    make_form(db, header, "chaos")
    file_id = s.store_bytes(db_url, data, filename="villages-100k.csv")
    return file_id


@pytest.mark.timeout(600)
def test_interrupted_upload_ends_identical_to_an_uninterrupted_one(db, db_url, uploads, tmp_path):
    reference = s.task("BaselineUpload", {"form": "reference", "fileId": uploads})
    assert s.run_inline(db_url, reference) == constants.EXIT_DONE

    # Throttled so that two dozen interruptions land before the end (the runner loads this
    # file unthrottled in a couple of seconds); throttled chunks are small, so more commits.
    task = s.task("BaselineUpload", {"form": "chaos", "fileId": uploads}, rate_limit=5000)
    rng = random.Random(20261130)
    terms = kills = 0
    deadline = time.monotonic() + 480
    while True:
        assert time.monotonic() < deadline, "the chaos run did not finish in time"
        proc = s.spawn(db_url, task, log=tmp_path / "runner.log")
        if terms + kills < 24:
            time.sleep(rng.uniform(0.3, 1.5))
            if rng.random() < 0.5:
                sent_at = time.time()
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=30)
                if code == constants.EXIT_DONE:
                    break
                assert code == constants.EXIT_STOPPED, f"SIGTERM should stop, exit {code}"
                # The runner stamps when its handler took the signal; not one chunk may
                # have asked to commit after that. A runner stopped while still starting
                # (before it took the lease) stamps nothing: then nothing after the signal.
                stamp = s.record(db, task.uid)["stop_requested_at"]
                seen = stamp.timestamp() if stamp is not None else 0.0
                if seen >= sent_at:
                    assert seen - sent_at < 1, f"signal sent {sent_at}, taken {seen}"
                else:
                    seen = sent_at
                late = chunks_after(db, task.uid, seen)
                assert late == [], f"chunks committed after the stop at {seen}: {late}"
                terms += 1
            else:
                proc.send_signal(signal.SIGKILL)
                code = proc.wait(timeout=30)
                if code == constants.EXIT_DONE:
                    break
                kills += 1
        else:
            code = proc.wait(timeout=300)
            assert code == constants.EXIT_DONE, (tmp_path / "runner.log").read_text()[-3000:]
            break

    assert terms >= 5 and kills >= 5, f"too few interruptions: {terms} SIGTERM, {kills} SIGKILL"
    rec = s.record(db, task.uid)
    assert (rec["run_status"], rec["done"], rec["total"]) == ("succeeded", ROWS, ROWS)
    assert rec["row_errors"] == 0
    assert form_checksum(db, "chaos") == form_checksum(db, "reference")


@pytest.mark.timeout(300)
def test_a_second_runner_fences_out_the_first(db, db_url, uploads, tmp_path):
    task = s.task("BaselineUpload", {"form": "chaos", "fileId": uploads}, rate_limit=20_000)
    first = s.spawn(db_url, task, log=tmp_path / "first.log")
    deadline = time.monotonic() + 60
    while s.record_or_none(db, task.uid, "done") in (None, 0):
        assert time.monotonic() < deadline and first.poll() is None, "first runner made no progress"
        time.sleep(0.05)
    second = s.spawn(db_url, task, log=tmp_path / "second.log")

    assert first.wait(timeout=60) == constants.EXIT_FENCED
    assert second.wait(timeout=240) == constants.EXIT_DONE
    reference = s.task("BaselineUpload", {"form": "reference", "fileId": uploads})
    assert s.run_inline(db_url, reference) == constants.EXIT_DONE
    assert form_checksum(db, "chaos") == form_checksum(db, "reference")
    with db.cursor() as cur:
        cur.execute("SELECT DISTINCT epoch FROM longtask.chunks WHERE task_uid = %s "
                    "ORDER BY epoch", (task.uid,))
        assert [r[0] for r in cur.fetchall()] == [1, 2], "both runners committed chunks in turn"


def test_sigterm_while_idle_in_rate_limit_exits_promptly(db, db_url, uploads, tmp_path):
    task = s.task("BaselineUpload", {"form": "chaos", "fileId": uploads}, rate_limit=200)
    proc = s.spawn(db_url, task, log=tmp_path / "r.log")
    deadline = time.monotonic() + 60
    while s.record_or_none(db, task.uid, "done") in (None, 0):
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == constants.EXIT_STOPPED
    assert time.monotonic() - started < 5
    rec = s.record(db, task.uid)
    assert rec["run_status"] == "stopped"
    assert "SIGTERM" in (rec["stop_reason"] or "")


@pytest.mark.timeout(120)
def test_a_hold_stops_the_run_at_its_next_chunk_and_keeps_new_runners_out(
        db, db_url, uploads, tmp_path):
    task = s.task("BaselineUpload", {"form": "chaos", "fileId": uploads}, rate_limit=5_000)
    proc = s.spawn(db_url, task, log=tmp_path / "run.log")
    deadline = time.monotonic() + 60
    while not s.record_or_none(db, task.uid, "done"):
        assert time.monotonic() < deadline and proc.poll() is None, "no progress"
        time.sleep(0.02)
    conn = s.connect(db_url)
    try:
        taskrecord.hold(conn, dataclasses.replace(task, name="t", namespace="default"),
                        "Paused")
    finally:
        conn.close()
    held_at = time.time()
    assert proc.wait(timeout=30) == constants.EXIT_STOPPED, "the runner stops on the hold"
    assert chunks_after(db, task.uid, held_at) == [], "no chunk commits once the hold is set"
    done = s.record(db, task.uid)["done"]

    assert s.run_inline(db_url, task) == constants.EXIT_STOPPED, "a new runner stays out"
    assert s.record(db, task.uid)["done"] == done
