"""The baseline preflight's lookups with 10 million stored records.

    python bench/preflight_scale.py [--records 10000000] [--reference 10000]

In a scratch database (a throwaway PostgreSQL, migrated), one organization's form of the
Karnataka village file's five name columns gets ``--records`` baseline records, loaded
with ``COPY`` (the file's 14,859 villages repeated, each record its own external id), and
a second form of the same organization ``--reference`` records made the same way. First,
what the GIN index costs the writes: ``--write-rows`` records copied with it, and again
without it. The
indexes are dropped for the load and built again after it (timed). Then the preflight of
a 200-row sample (clean, and with "District Name" and "Block Name" swapped) runs against
each form, five times each; prints the median and maximum time, the lookups made, and
the ratio of the large form's time to the reference's (measured in the same run: the
machine is shared, so compare the ratio). The cost grows with the index's depth (a
lookup is a descent of the GIN tree), not with the records: the ratio stays small.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

import psycopg2.extensions
from longtask.api import preflight

from devcluster import postgres, realdata
from longtask.db import connect
from longtask.db.migrate import upgrade
from longtask.values import FieldSpec, FieldType

FIELDS = ("District Name", "Block Name", "Subdistrict Name", "Localbody Name", "Village Name")
SAMPLE_ROWS = 200
RUNS = 5


def villages() -> list[dict[str, str]]:
    with realdata.path(realdata.KARNATAKA).open(encoding="utf-8", newline="") as handle:
        return [{f: row[f].strip() for f in FIELDS if row[f].strip()}
                for row in csv.DictReader(handle)]


class _Copy:
    """A file-like COPY source: ``count`` records of form ``form_id``, made as read."""

    def __init__(self, org_id: int, form_id: int, count: int,
                 rows: list[dict[str, str]]) -> None:
        self.lines = self._lines(org_id, form_id, count, [json.dumps(r) for r in rows])
        self.buffer = b""

    @staticmethod
    def _lines(org_id: int, form_id: int, count: int, data: list[str]) -> Iterator[bytes]:
        prefix = f"{org_id}\t{form_id}\t"
        n = len(data)
        for start in range(0, count, 10_000):
            yield "".join(f"{prefix}v{i}\t{data[i % n]}\n"
                          for i in range(start, min(count, start + 10_000))).encode()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.lines, None)
            if chunk is None:
                break
            self.buffer += chunk
        if size < 0:
            size = len(self.buffer)
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    readline = read


def load(conn: psycopg2.extensions.connection, org_id: int, name: str, count: int,
         rows: list[dict[str, str]]) -> int:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO collect.forms (organization_id, name) VALUES (%s, %s) "
                    "RETURNING id", (org_id, name))
        form_id = int(cur.fetchone()[0])  # type: ignore[index]
        for position, field in enumerate(FIELDS):
            cur.execute("INSERT INTO collect.form_fields (form_id, position, name, type) "
                        "VALUES (%s, %s, %s, 'text')", (form_id, position, field))
        source: IO[bytes] = _Copy(org_id, form_id, count, rows)  # type: ignore[assignment]
        cur.copy_expert("COPY collect.baseline_records (organization_id, form_id, "
                        "external_id, data) FROM STDIN", source, size=1 << 20)
    return form_id


def sample(rows: list[dict[str, str]], swap: bool) -> list[preflight.Column]:
    chosen = rows[5000:5000 + SAMPLE_ROWS]
    out = []
    for field in FIELDS:
        source = field
        if swap and field in ("District Name", "Block Name"):
            source = "Block Name" if field == "District Name" else "District Name"
        out.append(preflight.Column(field, field, "text",
                                    [r[source] for r in chosen if r.get(source)]))
    return out


def timed(conn: psycopg2.extensions.connection, org_id: int, form_id: int,
          columns: list[preflight.Column]) -> tuple[list[float], preflight.Outcome]:
    fields = [FieldSpec(f, FieldType.TEXT, False) for f in FIELDS]
    seconds, outcome = [], None
    for _ in range(RUNS):
        started = time.monotonic()
        outcome = preflight.baseline(conn, org_id, form_id, "villages", fields, columns, 30)
        seconds.append(time.monotonic() - started)
    assert outcome is not None
    return seconds, outcome


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--reference", type=int, default=10_000)
    parser.add_argument("--write-rows", type=int, default=100_000,
                        help="records of the COPY timed with and without the GIN index")
    args = parser.parse_args(argv)
    rows = villages()
    began = time.monotonic()
    with postgres.running() as server:
        upgrade(server.url)
        conn = connect(server.url, application_name="preflight-scale")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET maintenance_work_mem = '1GB'")
            cur.execute("INSERT INTO collect.organizations (slug, name) VALUES "
                        "('bench', 'Bench') RETURNING id")
            org_id = int(cur.fetchone()[0])  # type: ignore[index]
            cur.execute("SELECT pg_get_indexdef('collect.baseline_records_values'::regclass), "
                        "pg_get_constraintdef(oid), conname FROM pg_constraint "
                        "WHERE conrelid = 'collect.baseline_records'::regclass "
                        "AND contype = 'u'")
            gin_def, unique_def, unique_name = cur.fetchone()  # type: ignore[misc]
        # What the GIN index costs a baseline upload's writes: the same COPY with it and
        # without it (the unique index in place both times).
        started = time.monotonic()
        load(conn, org_id, "write-with-gin", args.write_rows, rows)
        with_gin = time.monotonic() - started
        with conn.cursor() as cur:
            cur.execute("DROP INDEX collect.baseline_records_values")
        started = time.monotonic()
        load(conn, org_id, "write-without-gin", args.write_rows, rows)
        without_gin = time.monotonic() - started
        print(f"COPY of {args.write_rows:,} records: {with_gin:.2f} s with the GIN index, "
              f"{without_gin:.2f} s without, ratio {with_gin / without_gin:.2f}", flush=True)
        with conn.cursor() as cur:
            cur.execute(f"ALTER TABLE collect.baseline_records DROP CONSTRAINT {unique_name}")
        started = time.monotonic()
        large = load(conn, org_id, "villages-large", args.records, rows)
        reference = load(conn, org_id, "villages-reference", args.reference, rows)
        copied = time.monotonic() - started
        with conn.cursor() as cur:
            started = time.monotonic()
            cur.execute(f"ALTER TABLE collect.baseline_records ADD CONSTRAINT {unique_name} "
                        f"{unique_def}")
            unique_built = time.monotonic() - started
            started = time.monotonic()
            cur.execute(gin_def)
            gin_built = time.monotonic() - started
            cur.execute("ANALYZE collect.baseline_records")
            cur.execute("SELECT pg_size_pretty(pg_relation_size('collect.baseline_records')), "
                        "pg_size_pretty(pg_relation_size('collect.baseline_records_values'))")
            table_size, gin_size = cur.fetchone()  # type: ignore[misc]
        print(f"loaded {args.records + args.reference:,} records with COPY in {copied:.0f} s "
              f"(table {table_size}); unique index built in {unique_built:.0f} s, GIN index "
              f"(jsonb_path_ops) in {gin_built:.0f} s ({gin_size})")
        for swap in (False, True):
            what = "swapped District/Block" if swap else "clean"
            columns = sample(rows, swap)
            ref_s, _ = timed(conn, org_id, reference, columns)
            big_s, outcome = timed(conn, org_id, large, columns)
            codes = [w.code for w in outcome.warnings]
            print(f"{what:24s} {args.reference:>10,} records: median "
                  f"{statistics.median(ref_s) * 1000:6.0f} ms, max {max(ref_s) * 1000:6.0f} ms")
            print(f"{'':24s} {args.records:>10,} records: median "
                  f"{statistics.median(big_s) * 1000:6.0f} ms, max {max(big_s) * 1000:6.0f} ms; "
                  f"{outcome.report.lookups} lookups; ratio "
                  f"{statistics.median(big_s) / statistics.median(ref_s):.1f}; warnings {codes}")
        conn.close()
    print(f"whole run {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    threading.stack_size(1 << 24)
    sys.exit(main())
