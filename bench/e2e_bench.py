"""End-to-end benchmarks on the whole stack, printed as ratios against references measured
in the same run.

    python bench/e2e_bench.py [--pauses 20] [--rows 100000] [--quick]

Starts one stack (:mod:`devcluster.stack`: PostgreSQL, Kubernetes, the operator, the API),
drives every task through the REST API only, and prints:

1. Pause: over N pauses of one rate-limited BaselineUpload, the time (ms) from the ``pause``
   call returning to the last row written and to the runner pod gone (no pod of the task
   left, or only finished ones), median and p95; and the rows written after the call
   returned, split into those of the chunk already in flight and those of later chunks
   (target: 0 of later chunks). Reference: the median chunk duration.
2. Resume overhead: time (ms) from the ``resume`` call returning to the first new row.
   Reference: the first ``start`` call to its first row.
3. Terminate with rollback of a 100,000-row upload after a good part is written: time (s)
   from the call until the next upload of the same organization (created right after it,
   so it waits Queued) writes its first row. Reference: the rollback's own duration.
4. Throughput (rows/s) of each case through the API (start call to ``Succeeded``) vs the
   runner alone, in-process, on the same data.

Times of rows come from the database (``created_at``, ``commit_requested_at``); the machine
is shared and noisy: compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2.extensions
from longtask.runner.cli import execute
from longtask.runner.engine import StopToken, TaskDefinition

from demo import files
from demo.control import ApiControl
from devcluster import seed, stack
from longtask import constants, filestore
from longtask.db import connect

PAUSE_ORG = "bench-pause"
ROLLBACK_ORG = "bench-rollback"
API_ORG = "bench-api"
REF_ORG = "bench-ref"
FORM = "village-baseline"
FINAL = {"Succeeded", "Failed", "RolledBack", "Terminated"}


@dataclass
class Options:
    """Sizes and rates of one run."""

    pauses: int
    rows: int
    pause_rate: float  # rows/s of the paused upload
    run_seconds: float  # s the paused upload runs between a resume's first row and a pause
    rollback_rows: int
    rollback_rate: float  # rows/s, so the terminate lands mid-run
    submissions: int
    teams: int


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(values: list[float], unit: str = "ms") -> str:
    """``median X  p95 Y`` (values in seconds, shown in ``unit``)."""
    if not values:
        return "no samples"
    scale = 1000.0 if unit == "ms" else 1.0
    return (f"median {statistics.median(values) * scale:7.0f} {unit}  "
            f"p95 {percentile(values, 0.95) * scale:7.0f} {unit}")


class Bench:
    """One stack, a REST client, an autocommit connection and the Kubernetes client."""

    def __init__(self, live: stack.Stack) -> None:
        from kubernetes import client

        self.live = live
        self.api = ApiControl(live.api_url, live.tokens)
        self.conn: psycopg2.extensions.connection = connect(live.db_url)
        self.conn.autocommit = True
        self.core = client.CoreV1Api(live.cluster.api_client())

    def sql(self, query: str, *args: Any) -> Any:
        """The first column of the first row of ``query``."""
        with self.conn.cursor() as cur:
            cur.execute(query, args)
            row = cur.fetchone()
            return None if row is None else row[0]

    def org_id(self, slug: str) -> int:
        return int(self.sql("SELECT id FROM collect.organizations WHERE slug = %s", slug))

    def add_org(self, slug: str) -> None:
        """An organization for the runner-alone references (no API token needed)."""
        self.sql("INSERT INTO collect.organizations (slug, name) VALUES (%s, %s) RETURNING id",
                 slug, slug)

    def village_form(self, slug: str) -> None:
        """The baseline form of :func:`demo.files.village_baseline` in organization ``slug``."""
        header = files.village_baseline(1).split(b"\n", 1)[0].decode().split(",")[1:]
        form_id = self.sql("INSERT INTO collect.forms (organization_id, name) VALUES (%s, %s) "
                           "RETURNING id", self.org_id(slug), FORM)
        with self.conn.cursor() as cur:
            for position, name in enumerate(header):
                kind = "integer" if name in ("Block Code", "District Code") else "text"
                cur.execute("INSERT INTO collect.form_fields (form_id, position, name, type, "
                            "required) VALUES (%s, %s, %s, %s, %s)",
                            (form_id, position, name, kind, name == "Village Name"))

    def pods_alive(self, uid: str) -> int:
        """Pods of task ``uid`` not yet finished (a deleted pod no longer counts)."""
        pods = self.core.list_namespaced_pod(
            self.live.namespace, label_selector=f"{constants.LABEL_TASK_UID}={uid}").items
        return sum(1 for p in pods
                   if p.status is None or p.status.phase not in ("Succeeded", "Failed"))

    def wait_phase(self, handle: str, phases: set[str], timeout: float = 900) -> str:
        deadline = time.monotonic() + timeout
        while (phase := self.api.status(handle).phase) not in phases | FINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{handle} still {phase} after {timeout:.0f} s")
            time.sleep(0.1)
        if phase not in phases:
            raise RuntimeError(f"{handle} ended {phase}: {self.api.status(handle).message}")
        return phase

    def first_row_after(self, uid: str, after: float, timeout: float = 300) -> float:
        """Epoch seconds of the first row of task ``uid`` created after ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            first = self.sql("SELECT extract(epoch FROM min(created_at))::float8 FROM "
                             "collect.baseline_records WHERE task_uid = %s AND created_at > "
                             "to_timestamp(%s)", uid, after)
            if first is not None:
                return float(first)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no row of {uid} after {timeout:.0f} s")
            time.sleep(0.05)

    def close(self) -> None:
        self.api.close()
        self.conn.close()


def upload_file(bench: Bench, org: str, data: bytes, name: str) -> str:
    return bench.api.upload(data, name, org)


# -- 1 and 2: pause and resume ------------------------------------------------------------
def bench_pause(bench: Bench, opts: Options) -> None:
    rows = max(opts.rows, int(opts.pauses * (opts.run_seconds + 4) * opts.pause_rate * 1.5))
    file_id = upload_file(bench, PAUSE_ORG, files.village_baseline(rows, prefix="P"), "p.csv")
    started = time.time()
    task = bench.api.start("BaselineUpload", PAUSE_ORG,
                           {"form": FORM, "keyColumn": "external_id", "fileId": file_id},
                           rate_limit=opts.pause_rate)
    uid = bench.api.uid(task)
    first = bench.first_row_after(uid, started - 1)
    start_to_row = first - started
    to_last: list[float] = []
    to_pod: list[float] = []
    to_first: list[float] = []
    chunk_durations: list[float] = []
    after_in_flight = after_later = 0
    mark = first
    for _ in range(opts.pauses):
        bench.first_row_after(uid, mark)  # running again
        time.sleep(opts.run_seconds)
        if bench.api.status(task).phase != "Running":
            break
        bench.api.pause(task)
        returned = time.time()
        pod_gone: float | None = None
        paused = False
        while pod_gone is None or not paused:
            if pod_gone is None and bench.pods_alive(uid) == 0:
                pod_gone = time.time()
            if not paused:
                phase = bench.api.status(task).phase
                paused = phase == "Paused"
                if phase in FINAL:
                    raise RuntimeError(f"{task} ended {phase} while pausing")
            time.sleep(0.05)
        last = bench.sql("SELECT extract(epoch FROM max(created_at))::float8 FROM "
                         "collect.baseline_records WHERE task_uid = %s", uid)
        to_last.append(float(last) - returned)
        to_pod.append(pod_gone - returned)
        with bench.conn.cursor() as cur:
            # Rows after the return, by the chunk they belong to: one already in flight when
            # the call returned (started before it), or one begun later (must not exist).
            cur.execute(
                "SELECT coalesce(sum((c.started_at <= to_timestamp(%(t)s))::int), 0), "
                "       coalesce(sum((c.started_at > to_timestamp(%(t)s))::int), 0) "
                "FROM collect.baseline_records r JOIN longtask.chunks c ON c.task_uid = "
                "r.task_uid AND c.mode = 'run' AND r.created_at BETWEEN c.started_at AND "
                "c.commit_requested_at WHERE r.task_uid = %(u)s AND r.created_at > "
                "to_timestamp(%(t)s)", {"t": returned, "u": uid})
            in_flight, later = cur.fetchone()  # type: ignore[misc]
        after_in_flight += int(in_flight)
        after_later += int(later)
        mark = float(last)
        bench.api.resume(task)
        resumed = time.time()
        to_first.append(bench.first_row_after(uid, mark) - resumed)
    chunk_durations = [float(x) for (x,) in _rows(
        bench, "SELECT extract(epoch FROM commit_requested_at - started_at)::float8 FROM "
        "longtask.chunks WHERE task_uid = %s AND mode = 'run'", uid)]
    chunk = statistics.median(chunk_durations)
    print(f"pause over {len(to_last)} pauses of a BaselineUpload at {opts.pause_rate:,.0f} rows/s"
          f" (median chunk {chunk * 1000:.0f} ms):")
    print(f"  pause returned -> last row written:  {summary(to_last)}  "
          f"median/chunk {statistics.median(to_last) / chunk:5.2f}")
    print(f"  pause returned -> runner pod gone:   {summary(to_pod)}  "
          f"median/chunk {statistics.median(to_pod) / chunk:5.2f}")
    print(f"  rows written after the call returned: {after_in_flight + after_later:,} "
          f"({after_in_flight:,} in the chunk already in flight, {after_later:,} in later "
          f"chunks; target 0)")
    print(f"resume returned -> first new row:      {summary(to_first)}  "
          f"vs start -> first row {start_to_row * 1000:.0f} ms: "
          f"ratio {statistics.median(to_first) / start_to_row:5.2f}")
    bench.api.terminate(task, rollback=False)
    bench.wait_phase(task, {"Terminated"})


def _rows(bench: Bench, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with bench.conn.cursor() as cur:
        cur.execute(query, args)
        return list(cur.fetchall())


# -- 3: terminate with rollback, then the next upload -------------------------------------
def bench_rollback(bench: Bench, opts: Options) -> None:
    params = {"form": FORM, "keyColumn": "external_id"}
    big = upload_file(bench, ROLLBACK_ORG,
                      files.village_baseline(opts.rollback_rows, prefix="T"), "t.csv")
    small = upload_file(bench, ROLLBACK_ORG, files.village_baseline(2_000, prefix="N"),
                        "n.csv")
    task = bench.api.start("BaselineUpload", ROLLBACK_ORG, {**params, "fileId": big},
                           rate_limit=opts.rollback_rate)
    deadline = time.monotonic() + 600
    while (status := bench.api.status(task)).done < 0.4 * opts.rollback_rows:
        if status.phase in FINAL or time.monotonic() > deadline:
            raise RuntimeError(f"{task} is {status.phase} at {status.done} rows")
        time.sleep(0.1)
    called = time.time()
    bench.api.terminate(task, rollback=True)
    following = bench.api.start("BaselineUpload", ROLLBACK_ORG, {**params, "fileId": small})
    queued = bench.api.status(following).phase
    first = bench.first_row_after(bench.api.uid(following), called, timeout=900)
    bench.wait_phase(task, {"RolledBack"})
    written, began, ended = bench.sql(
        "SELECT json_build_array(done, extract(epoch FROM rollback_started_at), "
        "extract(epoch FROM rollback_finished_at)) FROM longtask.tasks WHERE uid = %s",
        bench.api.uid(task))
    rollback = float(ended) - float(began)
    print(f"terminate with rollback of a {opts.rollback_rows:,}-row upload at {written:,} rows "
          f"written; the next upload was {queued} at first:")
    print(f"  terminate call -> next upload's first row: {first - called:6.2f} s  "
          f"(rollback itself {rollback:6.2f} s, ratio {(first - called) / rollback:5.2f})")
    bench.wait_phase(following, {"Succeeded"})


# -- 4: throughput through the API vs the runner alone ------------------------------------
def through_api(bench: Bench, task_type: str, org: str, params: dict[str, Any]) -> float:
    """Seconds from the start call to ``Succeeded`` seen through the API (0.1 s polls)."""
    started = time.monotonic()
    task = bench.api.start(task_type, org, params)
    bench.wait_phase(task, {"Succeeded"}, timeout=1800)
    return time.monotonic() - started


def runner_alone(bench: Bench, task_type: str, org: str, params: dict[str, Any]) -> float:
    """Seconds of the runner's ``run`` in this process (no Kubernetes, no API)."""
    task = TaskDefinition(uuid.uuid4(), task_type, org, params)
    started = time.monotonic()
    code = execute(task, "run", bench.live.db_url, StopToken())  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    if code != constants.EXIT_DONE:
        raise RuntimeError(f"{task_type} alone ended with exit code {code}")
    return elapsed


def store(bench: Bench, org: str, data: bytes, name: str) -> str:
    info = filestore.store(bench.conn, io.BytesIO(data), organization=org, filename=name)
    return str(info.id)


def bench_throughput(bench: Bench, opts: Options) -> None:
    print("throughput, through the API (start -> Succeeded) vs the runner alone:")
    report: list[tuple[str, int, float, float]] = []
    params = {"form": FORM, "keyColumn": "external_id"}
    data = files.village_baseline(opts.rows, prefix="E")
    alone = runner_alone(bench, "BaselineUpload", REF_ORG,
                         {**params, "fileId": store(bench, REF_ORG, data, "e.csv")})
    api = through_api(bench, "BaselineUpload", API_ORG,
                      {**params, "fileId": upload_file(bench, API_ORG, data, "e.csv")})
    report.append((f"BaselineUpload {opts.rows:,} rows", opts.rows, api, alone))

    form_id = seed.submission_form(bench.conn, bench.org_id(API_ORG))
    seed.submissions(bench.conn, bench.org_id(API_ORG), form_id, opts.submissions,
                     dt.datetime(2015, 1, 1, tzinfo=dt.UTC), dt.datetime(2019, 1, 1, tzinfo=dt.UTC))
    export = {"form": "household-survey", "from": "2017-08-01", "to": "2018-12-31"}
    exported = int(bench.sql("SELECT count(*) FROM collect.submissions WHERE form_id = %s AND "
                             "submitted_at >= '2017-08-01'", form_id))
    alone = runner_alone(bench, "Export", API_ORG, export)
    api = through_api(bench, "Export", API_ORG, export)
    report.append((f"Export {exported:,} of {opts.submissions:,} rows", exported, api, alone))

    teams = files.team_file(opts.teams)
    count = teams.count(b"\n") - 1
    alone = runner_alone(bench, "BulkTeamCreate", REF_ORG,
                         {"defaultRegion": "GB", "fileId": store(bench, REF_ORG, teams, "t.csv")})
    api = through_api(bench, "BulkTeamCreate", API_ORG,
                      {"defaultRegion": "GB",
                       "fileId": upload_file(bench, API_ORG, teams, "t.csv")})
    report.append((f"BulkTeamCreate {count:,} teams", count, api, alone))
    for label, n, api, alone in report:
        print(f"  {label:<34} API {api:7.2f} s ({n / api:8,.0f}/s)  alone {alone:7.2f} s "
              f"({n / alone:8,.0f}/s)  API/alone throughput {alone / api:5.2f}")


def run(opts: Options, parts: set[str]) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="longtask-e2e-bench-") as folder:
        live = stack.start(Path(folder), organizations=[PAUSE_ORG, ROLLBACK_ORG, API_ORG])
        bench = Bench(live)
        try:
            print(f"stack up in {time.monotonic() - started:.0f} s", flush=True)
            bench.add_org(REF_ORG)
            for org in (PAUSE_ORG, ROLLBACK_ORG, API_ORG, REF_ORG):
                bench.village_form(org)
            steps: dict[str, Callable[[Bench, Options], None]] = {
                "pause": bench_pause, "rollback": bench_rollback,
                "throughput": bench_throughput}
            for name, fn in steps.items():
                if name in parts:
                    fn(bench, opts)
                    print(flush=True)
        finally:
            bench.close()
            live.stop()
    print(f"done in {time.monotonic() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pauses", type=int, default=None, help="pause/resume cycles (20)")
    parser.add_argument("--rows", type=int, default=None, help="upload rows (100,000)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer pauses")
    parser.add_argument("--only", choices=("pause", "rollback", "throughput"), action="append",
                        help="run only these parts (repeatable)")
    args = parser.parse_args()
    if args.quick:
        opts = Options(pauses=5, rows=20_000, pause_rate=2_000, run_seconds=1.0,
                       rollback_rows=100_000, rollback_rate=20_000, submissions=100_000,
                       teams=500)
    else:
        opts = Options(pauses=20, rows=100_000, pause_rate=2_000, run_seconds=1.5,
                       rollback_rows=100_000, rollback_rate=10_000, submissions=500_000,
                       teams=2_000)
    if args.pauses is not None:
        opts.pauses = args.pauses
    if args.rows is not None:
        opts.rows = args.rows
    run(opts, set(args.only or ("pause", "rollback", "throughput")))


if __name__ == "__main__":
    main()
