"""The three cases of README.md, played through a :class:`~demo.control.Control`.

Each step prints what a user would see (phase, a progress bar, counts) and checks the
database afterwards (and, on the full stack, that no runner pod is left after a pause or
a terminate), so the demo fails loudly if the product does not do what it says.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions

from demo import files
from demo.control import Control, Inspecting, Status, wait_for
from devcluster import seed

FINAL = {"Succeeded", "Failed", "RolledBack", "Terminated"}


class Check(AssertionError):
    """A check after a step did not hold."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`Check` with ``message`` when ``condition`` is false."""
    if not condition:
        raise Check(message)


@dataclass
class Sizes:
    """How big the demo's inputs are (the full demo, or a quick one for tests)."""

    baseline_rows: int = 100_000
    second_rows: int = 20_000
    submissions: int = 2_000_000
    teams: int = 10_000
    upload_rate: float = 5_000
    teams_rate: float = 1_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(baseline_rows=12_000, second_rows=4_000, submissions=100_000, teams=1_500,
                   upload_rate=3_000, teams_rate=500)


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
             f"row errors: {status.row_errors:,}"]
    if status.rate and status.phase == "Running":
        parts.append(f"{status.rate:,.0f} rows/s")
    if status.eta is not None and status.phase == "Running":
        parts.append(f"ETA {status.eta:,.0f} s")
    parts.append(status.phase)
    return " · ".join(parts)


def step(text: str) -> None:
    print(f"  → {text}", flush=True)


class Demo:
    """Plays the cases for one organization; ``conn`` (autocommit) is for the checks,
    ``runner_pods`` (full stack only) counts the runner pods still alive."""

    def __init__(self, control: Control, conn: psycopg2.extensions.connection,
                 organization: str, sizes: Sizes,
                 runner_pods: Callable[[], int] | None = None) -> None:
        self.control = control
        self.conn = conn
        self.org = organization
        self.sizes = sizes
        self.runner_pods = runner_pods
        self.show = Printer()

    # -- helpers --------------------------------------------------------------------------
    def sql(self, query: str, *args: Any) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchone()[0]  # type: ignore[index]

    def upload(self, data: bytes, filename: str) -> str:
        file_id = self.control.upload(data, filename, self.org)
        step(f"uploaded {filename} ({len(data):,} bytes) as file {file_id}")
        return file_id

    def wait(self, handle: str, phases: set[str], timeout: float = 900) -> Status:
        """Wait for one of ``phases``; a :class:`Check` fails at once on another final one."""
        try:
            status = wait_for(self.control, handle, phases | FINAL, timeout=timeout,
                              show=self.show)
        finally:
            self.show.done()
        check(status.phase in phases, f"{handle} ended {status.phase}, expected "
              f"{' or '.join(sorted(phases))}: {status.message or ''}")
        return status

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

    def no_runner_pod(self, when: str) -> None:
        if self.runner_pods is None:
            return
        deadline = time.monotonic() + 30
        while (left := self.runner_pods()) and time.monotonic() < deadline:
            time.sleep(0.2)
        check(left == 0, f"{left} runner pods still alive after {when}")
        step(f"Kubernetes: no runner pod left after {when}")

    def pause_and_resume(self, task: str, share: float) -> None:
        self.wait_done(task, share)
        self.control.pause(task)
        step("pause")
        paused = self.wait(task, {"Paused"})
        self.no_runner_pod("the pause")
        time.sleep(2)
        check(self.control.status(task).done == paused.done, "rows were written while paused")
        step(f"paused at {paused.done:,} rows; 2 s later still {paused.done:,}")
        self.control.resume(task)
        step("resume: the runner continues from its last checkpoint")

    def written_by(self, table: str, handle: str) -> int:
        return int(self.sql(f"SELECT count(*) FROM collect.{table} WHERE task_uid::text = %s",
                            self.control.uid(handle)))

    # -- case 1 ---------------------------------------------------------------------------
    def baseline(self) -> None:
        n = self.sizes.baseline_rows
        print(f"\n1. Baseline upload ({n:,} village records from the Karnataka list)")
        good = files.village_baseline(n)
        header = good.split(b"\n", 1)[0].decode().split(",")[1:]
        org_id = self.sql("SELECT id FROM collect.organizations WHERE slug = %s", self.org)
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO collect.forms (organization_id, name) VALUES (%s, "
                        "'village-baseline') RETURNING id", (org_id,))
            form_id = cur.fetchone()[0]  # type: ignore[index]
            for position, name in enumerate(header):
                kind = "integer" if name in ("Block Code", "District Code") else "text"
                cur.execute("INSERT INTO collect.form_fields (form_id, position, name, type, "
                            "required) VALUES (%s, %s, %s, %s, %s)",
                            (form_id, position, name, kind, name == "Village Name"))
        params = {"form": "village-baseline", "keyColumn": "external_id"}
        file_a = self.upload(good, "villages.csv")
        self.validate("BaselineUpload", {**params, "fileId": file_a})
        task = self.control.start("BaselineUpload", self.org, {**params, "fileId": file_a},
                                  rate_limit=self.sizes.upload_rate)
        step(f"started {task}")
        self.pause_and_resume(task, 0.3)
        final = self.wait(task, {"Succeeded", "Failed"})
        check(final.phase == "Succeeded", f"upload ended {final.phase}: {final.message}")
        loaded = self.written_by("baseline_records", task)
        check(loaded == n, f"{loaded} rows loaded, expected {n}")
        step(f"database: {loaded:,} baseline records, each exactly once")

        m = self.sizes.second_rows
        second = files.village_baseline(m, prefix="W", offset=n)
        swapped = files.swap_columns(second, "District Name", "Block Name")
        wrong_file = self.upload(swapped, "villages-more.csv")
        self.validate("BaselineUpload", {**params, "fileId": wrong_file},
                      columns=("District Name", "Block Name"))
        wrong = self.control.start("BaselineUpload", self.org,
                                   {**params, "fileId": wrong_file},
                                   rate_limit=self.sizes.upload_rate / 4)
        step(f"started {wrong}; a second later the user sees District and Block swapped")
        self.wait_done(wrong, 0.02)
        self.control.terminate(wrong, rollback=True)
        step("terminate with rollback")
        right_file = self.upload(second, "villages-more-fixed.csv")
        right = self.control.start("BaselineUpload", self.org,
                                   {**params, "fileId": right_file},
                                   rate_limit=self.sizes.upload_rate)
        step(f"corrected upload {right} created at once: "
             f"{self.control.status(right).phase} until the rollback frees the slot")
        self.wait(wrong, {"RolledBack"})
        left = self.written_by("baseline_records", wrong)
        check(left == 0, f"{left} rows of the terminated upload remain")
        step("database: 0 rows of the swapped upload remain")
        final = self.wait(right, {"Succeeded", "Failed"})
        check(final.phase == "Succeeded", f"upload ended {final.phase}: {final.message}")
        total = self.sql("SELECT count(*) FROM collect.baseline_records WHERE form_id = %s",
                         form_id)
        check(total == n + m, f"{total} baseline records, expected {n + m}")
        step(f"database: {total:,} baseline records in all, the corrected ones included")

    def validate(self, task_type: str, params: dict[str, Any],
                 columns: tuple[str, ...] = ()) -> Any:
        """Show the dry run's mapping (API and command only): what the user checks before Start."""
        if not isinstance(self.control, Inspecting):
            return None
        report = self.control.validate(task_type, self.org, params)
        mapped = [c for c in report["columns"] if c.get("target")]
        step(f"dry run: valid={report['valid']}, {len(mapped)} columns mapped, "
             f"{len(report['rowErrors'])} row errors and {len(report['warnings'])} warnings "
             f"in the first {report['rowsRead']} rows")
        for column in report["columns"]:
            if column.get("header") in columns:
                step(f"    {column['header']!r} → {column['target']} ({column['type']}): "
                     f"{', '.join(column['samples'][:3])}")
        for warning in report["warnings"]:
            step(f"    warning {warning['code']}: {warning['detail']}")
        return report

    # -- case 2 ---------------------------------------------------------------------------
    def export(self) -> None:
        n = self.sizes.submissions
        print(f"\n2. Export ({n:,} submissions, 2015–2018)")
        org_id = self.sql("SELECT id FROM collect.organizations WHERE slug = %s", self.org)
        form_id = seed.submission_form(self.conn, org_id)
        started = time.monotonic()
        seed.submissions(self.conn, org_id, form_id, n,
                         dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
                         dt.datetime(2019, 1, 1, tzinfo=dt.UTC))
        step(f"seeded {n:,} submissions in {time.monotonic() - started:.0f} s")
        wrong = self.control.start("Export", self.org, {"form": "household-survey",
                                                         "from": "2015-08-01",
                                                         "to": "2018-12-31"},
                                   rate_limit=max(5_000, n // 40))
        step(f"export {wrong} from 2015-08-01 started (it should have been 2017-08-01)")
        self.wait_done(wrong, 0.05)
        self.control.terminate(wrong, rollback=True)
        step("terminate with rollback")
        self.wait(wrong, {"RolledBack"})
        parts = self.sql("SELECT count(*) FROM longtask.export_parts WHERE task_uid::text = %s",
                         self.control.uid(wrong))
        check(parts == 0, f"{parts} output parts of the terminated export remain")
        step("database: its partial output is removed")
        right = self.control.start("Export", self.org, {"form": "household-survey",
                                                         "from": "2017-08-01",
                                                         "to": "2018-12-31"})
        step(f"export {right} from 2017-08-01 started")
        final = self.wait(right, {"Succeeded", "Failed"})
        check(final.phase == "Succeeded", f"export ended {final.phase}: {final.message}")
        expected = self.sql("SELECT count(*) FROM collect.submissions WHERE form_id = %s AND "
                            "submitted_at >= '2017-08-01T00:00:00Z'", form_id)
        if isinstance(self.control, Inspecting):
            data, headers = self.control.output(right)
            rows = sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8")))) - 1
            digest = hashlib.sha256(data).hexdigest()
            step(f"downloaded {len(data):,} bytes, sha256 {digest[:12]}… "
                 f"(Content-Length {headers.get('content-length')})")
        else:
            rows = self.sql("SELECT coalesce(sum(rows), 0) FROM longtask.export_parts "
                            "WHERE task_uid::text = %s", right)
        check(rows == expected, f"export has {rows} rows, SQL counts {expected}")
        step(f"{rows:,} rows = direct SQL count {expected:,}")

    # -- case 3 ---------------------------------------------------------------------------
    def teams(self) -> None:
        n = self.sizes.teams
        print(f"\n3. Bulk team creation ({n:,} teams named after NHS practices, UK phones)")
        params = {"defaultRegion": "GB"}
        shifted = self.upload(files.team_file(n, shift=10), "teams.csv")
        task = self.control.start("BulkTeamCreate", self.org, {**params, "fileId": shifted},
                                  rate_limit=self.sizes.teams_rate / 4)
        step(f"started {task}; the manager phone column is ten rows off")
        self.wait_done(task, 0.05)
        self.control.terminate(task, rollback=True)
        step("terminate with rollback")
        self.wait(task, {"RolledBack"})
        self.no_runner_pod("the terminate")
        teams = self.sql("SELECT count(*) FROM collect.teams")
        users = self.sql("SELECT count(*) FROM collect.field_users")
        check(teams == 0 and users == 0, f"{teams} teams and {users} users remain")
        step("database: 0 teams and 0 users of the shifted file remain")

        fixed = self.upload(files.team_file(n), "teams-fixed.csv")
        task = self.control.start("BulkTeamCreate", self.org, {**params, "fileId": fixed},
                                  rate_limit=self.sizes.teams_rate)
        step(f"started {task} with the corrected file")
        self.pause_and_resume(task, 0.3)
        final = self.wait(task, {"Succeeded", "Failed"})
        check(final.phase == "Succeeded", f"team creation ended {final.phase}")
        teams = self.sql("SELECT count(*) FROM collect.teams")
        check(teams + final.row_errors == n, f"{teams} teams + {final.row_errors} errors != {n}")
        step(f"database: {teams:,} teams with their managers and members"
             + (f"; {final.row_errors} rows refused (see /errors)" if final.row_errors else ""))
