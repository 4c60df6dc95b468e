"""The three cases of DESIGN.md, played through a :class:`~demo.control.Control`.

Each step prints what a user would see (phase, a progress bar, counts) and checks the
database afterwards, so the demo fails loudly if the product does not do what it says.
"""

from __future__ import annotations

import datetime as dt
import io
import sys
import time
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions
from longtask.runner import filestore

from demo import files
from demo.control import Control, Status, wait_for
from devcluster import seed

FINAL = {"Succeeded", "Failed", "RolledBack", "Terminated"}


class Check(AssertionError):
    """A database check after a step did not hold."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`Check` with ``message`` when ``condition`` is false."""
    if not condition:
        raise Check(message)


@dataclass
class Sizes:
    """How big the demo's inputs are (the full demo, or a quick one for tests)."""

    baseline_rows: int = 100_000
    submissions: int = 2_000_000
    teams: int = 10_000
    upload_rate: float = 6_000
    teams_rate: float = 1_500

    @classmethod
    def quick(cls) -> Sizes:
        return cls(baseline_rows=20_000, submissions=200_000, teams=2_000, upload_rate=4_000,
                   teams_rate=800)


class Printer:
    """Prints a task's status: a live line on a terminal, a line per change otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self._last = ""
        self._last_at = 0.0

    def __call__(self, status: Status) -> None:
        line = render(status)
        now = time.monotonic()
        if self.tty:
            sys.stdout.write("\r\x1b[K    " + line)
            sys.stdout.flush()
        elif line.split("·")[-1] != self._last.split("·")[-1] or now - self._last_at > 3:
            print("    " + line, flush=True)
            self._last_at = now
        self._last = line

    def done(self) -> None:
        if self.tty and self._last:
            sys.stdout.write("\n")
        self._last = ""


def render(status: Status) -> str:
    """One status line: bar, percent, rows, row errors, rate, ETA and phase."""
    total = status.total or 0
    share = min(1.0, status.done / total) if total else 0.0
    bar = "#" * int(share * 24) + "." * (24 - int(share * 24))
    parts = [f"[{bar}] {share * 100:3.0f}%  {status.done:,}/{total:,} rows",
             f"{status.row_errors:,} row errors"]
    if status.rate:
        parts.append(f"{status.rate:,.0f} rows/s")
    if status.eta is not None and status.phase == "Running":
        parts.append(f"ETA {status.eta:,.0f} s")
    parts.append(status.phase)
    return " · ".join(parts)


def step(text: str) -> None:
    print(f"  → {text}", flush=True)


class Demo:
    """Plays the cases for one organization on one database connection (autocommit)."""

    def __init__(self, control: Control, conn: psycopg2.extensions.connection,
                 organization: str, sizes: Sizes) -> None:
        self.control = control
        self.conn = conn
        self.org = organization
        self.sizes = sizes
        self.show = Printer()

    # -- helpers --------------------------------------------------------------------------
    def sql(self, query: str, *args: Any) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchone()[0]  # type: ignore[index]

    def store(self, data: bytes, filename: str) -> str:
        info = filestore.store(self.conn, io.BytesIO(data), organization=self.org,
                               filename=filename)
        step(f"stored {filename}: {info.size_bytes:,} bytes, sha256 {info.sha256[:12]}…, "
             f"{info.encoding}")
        return str(info.id)

    def wait(self, handle: str, phases: set[str], timeout: float = 600) -> Status:
        try:
            return wait_for(self.control, handle, phases, timeout=timeout, show=self.show)
        finally:
            self.show.done()

    def wait_done(self, handle: str, share: float, timeout: float = 300) -> Status:
        """Wait until at least ``share`` of the task is done."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.control.status(handle)
            self.show(status)
            if status.total and status.done >= share * status.total:
                self.show.done()
                return status
            check(status.phase not in FINAL, f"task ended early: {status.phase}")
            check(time.monotonic() < deadline, "no progress")
            time.sleep(0.2)

    # -- case 1 ---------------------------------------------------------------------------
    def baseline(self) -> None:
        print("\n1. Baseline upload: swapped columns caught, rolled back, corrected file loaded")
        good = files.village_baseline(self.sizes.baseline_rows)
        swapped = files.swap_columns(good, "District Name", "Block Name")
        org_id = self.sql("SELECT id FROM collect.organizations WHERE slug = %s", self.org)
        header = good.split(b"\n", 1)[0].decode().split(",")[1:]
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO collect.forms (organization_id, name) VALUES (%s, "
                        "'village-baseline') RETURNING id", (org_id,))
            form_id = cur.fetchone()[0]  # type: ignore[index]
            for position, name in enumerate(header):
                kind = "integer" if name in ("Block Code", "District Code") else "text"
                cur.execute("INSERT INTO collect.form_fields (form_id, position, name, type, "
                            "required) VALUES (%s, %s, %s, %s, %s)",
                            (form_id, position, name, kind, name == "Village Name"))
        wrong = self.store(swapped, "villages-swapped.csv")
        params = {"form": "village-baseline", "keyColumn": "external_id"}
        task = self.control.start("BaselineUpload", self.org, {**params, "fileId": wrong},
                                  rate_limit=self.sizes.upload_rate)
        step("started the upload; a second later the user sees District and Block swapped")
        self.wait_done(task, 0.02)
        self.control.terminate(task, rollback=True)
        step("terminate with rollback")
        self.wait(task, {"RolledBack"})
        left = self.sql("SELECT count(*) FROM collect.baseline_records WHERE form_id = %s",
                        form_id)
        check(left == 0, f"{left} rows of the terminated upload remain")
        step("database: 0 rows of the swapped upload remain")

        right = self.store(good, "villages.csv")
        task = self.control.start("BaselineUpload", self.org, {**params, "fileId": right},
                                  rate_limit=self.sizes.upload_rate)
        step("corrected upload started at once (the organization's upload slot is free)")
        self.wait_done(task, 0.3)
        self.control.pause(task)
        paused = self.wait(task, {"Paused"})
        step(f"paused at {paused.done:,} rows")
        time.sleep(2)
        check(self.control.status(task).done == paused.done, "rows were written while paused")
        step("2 s later: still the same count — nothing runs while paused")
        self.control.resume(task)
        step("resumed from the checkpoint")
        final = self.wait(task, {"Succeeded", "Failed"})
        check(final.phase == "Succeeded", f"upload ended {final.phase}: {final.message}")
        loaded = self.sql("SELECT count(*) FROM collect.baseline_records WHERE form_id = %s",
                          form_id)
        check(loaded == self.sizes.baseline_rows, f"{loaded} rows loaded")
        step(f"database: {loaded:,} baseline records, each exactly once")

    # -- case 2 ---------------------------------------------------------------------------
    def export(self) -> None:
        n = self.sizes.submissions
        print(f"\n2. Export: the wrong range terminated, the right one downloaded ({n:,} rows)")
        org_id = self.sql("SELECT id FROM collect.organizations WHERE slug = %s", self.org)
        form_id = seed.submission_form(self.conn, org_id)
        started = time.monotonic()
        seed.submissions(self.conn, org_id, form_id, n,
                         dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
                         dt.datetime(2019, 1, 1, tzinfo=dt.UTC))
        step(f"seeded {n:,} submissions over 2015–2018 in {time.monotonic() - started:.0f} s")
        wrong = self.control.start("Export", self.org, {"form": "household-survey",
                                                         "from": "2015-08-01",
                                                         "to": "2018-12-31"})
        step("export from 2015-08-01 started (should have been 2017-08-01)")
        self.wait_done(wrong, 0.05)
        self.control.terminate(wrong, rollback=True)
        self.wait(wrong, {"RolledBack"})
        parts = self.sql("SELECT count(*) FROM longtask.export_parts WHERE task_uid::text = "
                         "(SELECT uid::text FROM longtask.tasks WHERE uid::text = %s)", wrong)
        check(parts == 0, f"{parts} output parts of the terminated export remain")
        step("terminated; its partial output is removed")
        right = self.control.start("Export", self.org, {"form": "household-survey",
                                                         "from": "2017-08-01",
                                                         "to": "2018-12-31"})
        step("export from 2017-08-01 started")
        final = self.wait(right, {"Succeeded", "Failed"})
        check(final.phase == "Succeeded", f"export ended {final.phase}: {final.message}")
        rows = self.sql("SELECT coalesce(sum(rows), 0) FROM longtask.export_parts "
                        "WHERE task_uid::text = %s", right)
        expected = self.sql("SELECT count(*) FROM collect.submissions WHERE form_id = %s AND "
                            "submitted_at >= '2017-08-01T00:00:00Z'", form_id)
        check(rows == expected, f"export has {rows} rows, SQL counts {expected}")
        step(f"downloaded {rows:,} rows = direct SQL count {expected:,}")

    # -- case 3 ---------------------------------------------------------------------------
    def teams(self) -> None:
        n = self.sizes.teams
        print(f"\n3. Bulk team creation: shifted phone column rolled back, {n:,} teams created")
        shifted = self.store(files.team_file(n, shift=10), "teams-shifted.csv")
        params = {"defaultRegion": "GB"}
        task = self.control.start("BulkTeamCreate", self.org, {**params, "fileId": shifted},
                                  rate_limit=self.sizes.teams_rate)
        step("started; the manager phones are ten rows off")
        self.wait_done(task, 0.05)
        self.control.terminate(task, rollback=True)
        self.wait(task, {"RolledBack"})
        teams = self.sql("SELECT count(*) FROM collect.teams")
        users = self.sql("SELECT count(*) FROM collect.field_users")
        check(teams == 0 and users == 0, f"{teams} teams and {users} users remain")
        step("rolled back: 0 teams and 0 users of the shifted file remain")

        right = self.store(files.team_file(n), "teams.csv")
        task = self.control.start("BulkTeamCreate", self.org, {**params, "fileId": right},
                                  rate_limit=self.sizes.teams_rate)
        self.wait_done(task, 0.3)
        self.control.pause(task)
        paused = self.wait(task, {"Paused"})
        step(f"paused at {paused.done:,} rows; resuming")
        self.control.resume(task)
        final = self.wait(task, {"Succeeded", "Failed"})
        check(final.phase == "Succeeded", f"team creation ended {final.phase}")
        teams = self.sql("SELECT count(*) FROM collect.teams")
        check(teams + final.row_errors == n, f"{teams} teams + {final.row_errors} errors != {n}")
        step(f"database: {teams:,} teams with managers and members")
