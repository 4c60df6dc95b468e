"""Runner benchmarks, printed as ratios against references measured in the same run.

    python bench/runner_bench.py [--rows 100000] [--memory-mb 1024] [--stops 20]

Starts a throwaway PostgreSQL cluster (or uses ``$LONGTASK_BENCH_DATABASE_URL``) and prints:

1. BaselineUpload of N rows vs ``COPY`` of the same rows, already rendered, into the same
   table (the least any loader must do). Target >= 0.75.
2. Export of N submissions vs ``COPY (SELECT ...) TO STDOUT`` of the same rows and columns.
   Target >= 0.8.
3. Rollback of the upload vs the upload itself. Target: rollback at least 2x faster.
4. SIGTERM to abort: from the signal to the runner process's exit, while it works.
   Target p95 < 50 ms.
5. Peak memory (max RSS) of the runner process storing and uploading a file of the given
   size, stopped after a fixed time. Target < 200 MB.

Machines here are noisy: compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from longtask.runner.cli import execute
from longtask.runner.engine import StopToken, TaskDefinition
from longtask.runner.tasks.common import load_form
from longtask.runner.tasks.export import select_list
from psycopg2 import sql

from devcluster import postgres, realdata, seed
from longtask import constants, filestore
from longtask.db import connect

VILLAGES = realdata.path(realdata.KARNATAKA)
UTC = dt.UTC


def village_file(rows: int) -> bytes:
    """``rows`` village records with a unique ``external_id``, from the real Karnataka file."""
    lines = VILLAGES.read_text().splitlines()
    header, body = lines[0], lines[1:]
    out = [f"external_id,{header}"]
    out.extend(f"V{i:08d},{body[i % len(body)]}" for i in range(rows))
    return ("\n".join(out) + "\n").encode()


def village_form(conn, org_id: int, name: str, header: str) -> None:  # type: ignore[no-untyped-def]
    with conn.cursor() as cur:
        cur.execute("INSERT INTO collect.forms (organization_id, name) VALUES (%s, %s) "
                    "RETURNING id", (org_id, name))
        form_id = cur.fetchone()[0]
        for position, field in enumerate(header.split(",")[1:]):
            ftype = "integer" if field in {"Assembly Constituency Code", "Block Code",
                                           "District Code"} else "text"
            cur.execute("INSERT INTO collect.form_fields (form_id, position, name, type) "
                        "VALUES (%s, %s, %s, %s)", (form_id, position, field, ftype))


def timed(fn, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - started


def run(url: str, task: TaskDefinition, mode: str = "run") -> None:
    code = execute(task, mode, url, StopToken())  # type: ignore[arg-type]
    if code != constants.EXIT_DONE:
        raise SystemExit(f"{task.type} {mode} ended with exit code {code}")


def _copy_escape(text: str) -> str:
    return text.replace("\\", "\\\\")


def bench_upload(url: str, conn, org_id: int, rows: int,  # type: ignore[no-untyped-def]
                 repeats: int) -> tuple[float, float, float]:
    """Best of ``repeats`` rounds of: upload, COPY of the same rows, rollback of the upload.

    Each round loads new forms of the same table, upload and COPY in turn, so both meet
    the same table size and the same noise; the best time of each is kept (as timeit does).
    """
    data = village_file(rows)
    header = data.split(b"\n", 1)[0].decode()
    info = filestore.store(conn, io.BytesIO(data), organization="bench", filename="v.csv")
    uploads, references, rollbacks = [], [], []
    for round_ in range(repeats):
        village_form(conn, org_id, f"upload-{round_}", header)
        village_form(conn, org_id, f"reference-{round_}", header)
        task = TaskDefinition(uuid.uuid4(), "BaselineUpload", "bench",
                              {"form": f"upload-{round_}", "fileId": str(info.id)})
        uploads.append(timed(run, url, task))
        # Reference: the same rows, already rendered, copied straight into the same table.
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM collect.forms WHERE organization_id = %s AND name = %s",
                        (org_id, f"reference-{round_}"))
            reference_form = cur.fetchone()[0]
            cur.execute("SELECT external_id, data FROM collect.baseline_records "
                        "WHERE task_uid = %s", (task.uid,))
            rendered = "".join(
                f"{org_id}\t{reference_form}\t{ext}\t{_copy_escape(orjson.dumps(d).decode())}\n"
                for ext, d in cur.fetchall())
            started = time.perf_counter()
            cur.copy_expert("COPY collect.baseline_records (organization_id, form_id, "
                            "external_id, data) FROM STDIN", io.StringIO(rendered))
            references.append(time.perf_counter() - started)
        rollbacks.append(timed(run, url, task, "rollback"))
    return min(uploads), min(references), min(rollbacks)


def bench_export(url: str, conn, org_id: int, rows: int,  # type: ignore[no-untyped-def]
                 repeats: int) -> tuple[float, float, float]:
    """Best of ``repeats`` rounds of: an export of ``rows`` submissions (formula cells
    escaped, the default), then one COPY of the very same columns rendered by the same
    expressions, and one COPY without the escaping (what ``formulaCells: keep`` reads)."""
    form_id = seed.submission_form(conn, org_id)
    seed.submissions(conn, org_id, form_id, rows, dt.datetime(2015, 1, 1, tzinfo=UTC),
                     dt.datetime(2019, 1, 1, tzinfo=UTC))
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE collect.submissions")
    form = load_form(conn, org_id, "household-survey")
    queries = [sql.SQL("COPY (SELECT {} FROM collect.submissions WHERE form_id = {} "
                       "ORDER BY submitted_at, id) TO STDOUT WITH (FORMAT csv)").format(
        select_list(form.fields, escape_formulas=escape), sql.Literal(form_id))
        for escape in (True, False)]
    exports, references, unescaped = [], [], []
    for _ in range(repeats):
        task = TaskDefinition(uuid.uuid4(), "Export", "bench", {
            "form": "household-survey", "from": "2015-01-01", "to": "2018-12-31"})
        exports.append(timed(run, url, task))
        with conn.cursor() as cur:
            for query, times in zip(queries, (references, unescaped), strict=True):
                started = time.perf_counter()
                cur.copy_expert(query.as_string(conn), io.BytesIO())
                times.append(time.perf_counter() - started)
            cur.execute("DELETE FROM longtask.export_parts WHERE task_uid = %s", (task.uid,))
    return min(exports), min(references), min(unescaped)


def runner_process(url: str, task: TaskDefinition) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LONGTASK_DATABASE_URL": url, "LONGTASK_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "longtask.runner", "run", "--task", str(task.uid), "--type",
         task.type, "--organization", task.organization, "--params", json.dumps(task.params)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def progress(conn, uid: uuid.UUID) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(epoch, done) of a task; (0, 0) before it has a record."""
    with conn.cursor() as cur:
        cur.execute("SELECT epoch, done FROM longtask.tasks WHERE uid = %s", (uid,))
        row = cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def wait_for_progress(conn, uid: uuid.UUID, proc: subprocess.Popen[bytes],  # type: ignore[no-untyped-def]
                      timeout: float = 120) -> None:
    """Wait until the runner ``proc`` holds the lease and has committed a chunk."""
    epoch, done = progress(conn, uid)
    deadline = time.monotonic() + timeout
    while True:
        now_epoch, now_done = progress(conn, uid)
        if now_epoch > epoch and now_done > done:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the runner made no progress")
        time.sleep(0.02)


def bench_stops(url: str, conn, stops: int) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Seconds from SIGTERM to the open chunk rolled back, and to the process's exit."""
    data = village_file(200_000)
    info = filestore.store(conn, io.BytesIO(data), organization="bench", filename="stop.csv")
    village_form(conn, org_id_of(conn), "stops", data.split(b"\n", 1)[0].decode())
    task = TaskDefinition(uuid.uuid4(), "BaselineUpload", "bench",
                          {"form": "stops", "fileId": str(info.id)})
    rng = random.Random(7)
    aborts: list[float] = []
    exits: list[float] = []
    for _ in range(stops):
        proc = runner_process(url, task)
        wait_for_progress(conn, task.uid, proc)
        time.sleep(rng.uniform(0.05, 0.4))
        if proc.poll() is not None:
            break
        sent_wall, sent = time.time(), time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        exits.append(time.perf_counter() - sent)
        if code != constants.EXIT_STOPPED:
            break
        with conn.cursor() as cur:  # the runner stamps its record once the chunk is undone
            cur.execute("SELECT extract(epoch FROM heartbeat_at)::float8 FROM longtask.tasks "
                        "WHERE uid = %s AND run_status = 'stopped'", (task.uid,))
            aborts.append(float(cur.fetchone()[0]) - sent_wall)
    return aborts, exits


def org_id_of(conn) -> int:  # type: ignore[no-untyped-def]
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM collect.organizations WHERE slug = 'bench'")
        return int(cur.fetchone()[0])


def bench_memory(url: str, conn, megabytes: int, seconds: float) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    """Peak RSS (MB) of a runner storing and then uploading a file of ``megabytes`` MB."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as handle:
        body = VILLAGES.read_text().splitlines()
        header = "external_id," + body[0]
        handle.write((header + "\n").encode())
        written, i = 0, 0
        target = megabytes * 1024 * 1024
        while written < target:
            line = f"M{i:09d},{body[1 + i % (len(body) - 1)]}\n".encode()
            handle.write(line)
            written += len(line)
            i += 1
        handle.flush()
        village_form(conn, org_id_of(conn), "memory", header)
        probe = (
            "import io, sys, uuid\n"
            "from longtask.db import connect\n"
            "from longtask import filestore\n"
            "conn = connect(sys.argv[1])\n"
            "with open(sys.argv[2], 'rb') as f:\n"
            "    info = filestore.store(conn, f, organization='bench', filename='big.csv')\n"
            # VmHWM, not ru_maxrss: after fork and exec, ru_maxrss still counts the parent's
            # (this benchmark's) resident set at the fork.
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
            "print(info.id, hwm.split()[1])\n"
        )
        out = subprocess.run([sys.executable, "-c", probe, url, handle.name], check=True,
                             capture_output=True, text=True).stdout.split()
        file_id, store_rss_kb = out[0], int(out[1])
    task = TaskDefinition(uuid.uuid4(), "BaselineUpload", "bench",
                          {"form": "memory", "fileId": file_id})
    proc = runner_process(url, task)
    wait_for_progress(conn, task.uid, proc, timeout=600)
    deadline = time.monotonic() + seconds
    sampled_kb = 0
    while time.monotonic() < deadline:  # the resident set, sampled, beside the high-water mark
        sampled_kb = max(sampled_kb, proc_status_kb(proc.pid, "VmRSS"))
        time.sleep(0.25)
    run_rss_kb = proc_status_kb(proc.pid, "VmHWM")  # the runner's own peak, before it stops
    print(f"  runner: VmHWM {run_rss_kb / 1024:.1f} MB, largest VmRSS sampled every 0.25 s "
          f"after its first chunk {sampled_kb / 1024:.1f} MB; store: {store_rss_kb / 1024:.1f} MB")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    with conn.cursor() as cur:
        cur.execute("SELECT done FROM longtask.tasks WHERE uid = %s", (task.uid,))
        done = int(cur.fetchone()[0])
    return max(store_rss_kb, run_rss_kb) / 1024, i, done


def proc_status_kb(pid: int, field: str) -> int:
    """A size field of ``/proc/<pid>/status`` (VmHWM: peak resident set; VmRSS: now), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of upload and COPY (and of export and COPY TO); best kept")
    parser.add_argument("--stops", type=int, default=20)
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--memory-seconds", type=float, default=30.0)
    args = parser.parse_args()
    with postgres.migrated() as url:
        conn = connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("INSERT INTO collect.organizations (slug, name) VALUES ('bench', 'Bench') "
                        "RETURNING id")
            org_id = cur.fetchone()[0]  # type: ignore[index]

        upload, copy_in, rollback = bench_upload(url, conn, org_id, args.rows, args.repeats)
        print(f"upload   {args.rows:>9,} rows: {upload:7.2f} s ({args.rows / upload:9,.0f} rows/s)"
              f"  COPY {copy_in:6.2f} s  ratio {copy_in / upload:5.2f} (target >= 0.75)")
        print(f"rollback {args.rows:>9,} rows: {rollback:7.2f} s  upload/rollback "
              f"{upload / rollback:5.1f}x (target >= 2x)")
        export, copy_out, plain = bench_export(url, conn, org_id, args.export_rows,
                                               args.repeats)
        print(f"export   {args.export_rows:>9,} rows: {export:7.2f} s "
              f"({args.export_rows / export:9,.0f} rows/s)  COPY TO {copy_out:6.2f} s  "
              f"ratio {copy_out / export:5.2f} (target >= 0.8)")
        print(f"formula escaping: COPY TO {copy_out:6.2f} s escaped, {plain:6.2f} s kept, "
              f"ratio {copy_out / plain:5.2f}")
        aborts, exits = bench_stops(url, conn, args.stops)
        for label, values, note in (
                ("SIGTERM to abort", aborts, "target p95 < 50 ms"),
                ("SIGTERM to exit ", exits, "no target: the process's own teardown")):
            ms = sorted(x * 1000 for x in values)
            if ms:
                p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
                print(f"{label} over {len(ms)} stops: median {statistics.median(ms):6.1f} ms"
                      f"  p95 {p95:6.1f} ms ({note})")
        if args.memory_mb:
            peak, rows, done = bench_memory(url, conn, args.memory_mb, args.memory_seconds)
            print(f"peak RSS storing and uploading a {args.memory_mb} MB file ({rows:,} rows, "
                  f"{done:,} loaded before the stop): {peak:6.1f} MB (target < 200 MB)")
        conn.close()


if __name__ == "__main__":
    main()
