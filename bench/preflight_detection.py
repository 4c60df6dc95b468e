"""How often the preflight catches a swapped pair of columns or a shifted phone column.

    python bench/preflight_detection.py [--swaps 50] [--shifts 50] [--seed 1]

On the real files of ``data/real`` (a throwaway PostgreSQL, migrated): each file's rows
are shuffled, 70 % stored as the organization's baseline records of a form whose fields
are the file's columns (all text: the preflight's hardest case, since the type check
sees nothing), and uploads are drawn from the other 30 % (records the organization does
not have yet), 200 rows each, as the dry run samples them. Prints, per file:

- ``swaps``: N uploads with two random adjacent columns swapped; how many drew a
  ``columns-swapped`` warning naming both (a pair whose values are alike on most rows,
  such as "Village Census 2011 Code" and "Village Code", is counted apart: no comparison
  of values can see that swap);
- ``clean``: N uploads unchanged; how many drew any ``columns-swapped`` (false alarms).

For the teams: the NHS practices (``epraccur.csv``) as in ``demo/files.py``; the
organization has half of them as teams with their managers. M windows of 200 rows, the
phone column shifted by k rows (k drawn from 1–30), and M unshifted windows; how many
drew ``column-shifted`` with the right offset, and how many clean ones were flagged.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import time
from collections.abc import Sequence

import psycopg2.extensions
from longtask.api import preflight

from devcluster import postgres, realdata
from longtask.db import connect
from longtask.db.migrate import upgrade
from longtask.values import FieldSpec, FieldType, InvalidValue, normalize_phone

SAMPLE_ROWS = 200
STORED_SHARE = 0.7
TIMEOUT = 30.0
SHOW = False  # --show: print each false alarm and miss
ALIKE = 0.5  # a swap that leaves at least this share of the rows' cells as they were


def read_table(name: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a real file; unnamed and twice-named columns are left out,
    and ``epraccur.csv`` (no header) gets ``c01``...``c27``."""
    with realdata.path(name).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    if name == realdata.EPRACCUR:
        header = [f"c{i + 1:02d}" for i in range(len(rows[0]))]
    else:
        header, rows = rows[0], rows[1:]
    keep, seen = [], set()
    for i, h in enumerate(header):
        folded = h.strip().lower()
        if folded and folded not in seen:
            seen.add(folded)
            keep.append(i)
    width = max(keep) + 1
    return ([header[i].strip() for i in keep],
            [[r[i].strip() for i in keep] for r in rows if len(r) >= width])


def store_baseline(conn: psycopg2.extensions.connection, org_id: int, form: str,
                   header: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    """Make form ``form`` (every column a text field) and store ``rows`` as its records."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO collect.forms (organization_id, name) VALUES (%s, %s) "
                    "RETURNING id", (org_id, form))
        form_id = int(cur.fetchone()[0])  # type: ignore[index]
        for position, name in enumerate(header):
            cur.execute("INSERT INTO collect.form_fields (form_id, position, name, type) "
                        "VALUES (%s, %s, %s, 'text')", (form_id, position, name))
        text = io.StringIO()
        for i, row in enumerate(rows):
            data = json.dumps({h: v for h, v in zip(header, row, strict=True) if v})
            text.write(f"{org_id}\t{form_id}\tr{i}\t"
                       + data.replace("\\", "\\\\") + "\n")
        text.seek(0)
        cur.copy_expert("COPY collect.baseline_records (organization_id, form_id, "
                        "external_id, data) FROM STDIN", text)
        cur.execute("ANALYZE collect.baseline_records")
    return form_id


def _worded(value: str) -> bool:
    return any(ch.isalpha() for ch in value)


def columns_of(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[preflight.Column]:
    """The columns as the dry run hands them to the preflight: non-blank values."""
    return [preflight.Column(h, h, "text", [r[i] for r in rows if r[i]])
            for i, h in enumerate(header)]


def swapped_pairs(warnings: Sequence[object]) -> set[frozenset[str]]:
    return {frozenset(w.columns) for w in warnings  # type: ignore[attr-defined]
            if w.code == "columns-swapped"}  # type: ignore[attr-defined]


def bench_baseline(conn: psycopg2.extensions.connection, org_id: int, name: str,
                   swaps: int, rng: random.Random) -> None:
    header, rows = read_table(name)
    rng.shuffle(rows)
    cut = int(len(rows) * STORED_SHARE)
    stored, fresh = rows[:cut], rows[cut:]
    form_id = store_baseline(conn, org_id, name, header, stored)
    fields = [FieldSpec(h, FieldType.TEXT, False) for h in header]
    detected = alike = numbers = missed = flagged = 0
    seconds: list[float] = []
    for _ in range(swaps):
        sample = rng.sample(fresh, min(SAMPLE_ROWS, len(fresh)))
        i = rng.randrange(len(header) - 1)
        same = sum(1 for r in sample if r[i] == r[i + 1]) / len(sample)
        swapped = [[*r[:i], r[i + 1], r[i], *r[i + 2:]] for r in sample]
        started = time.monotonic()
        out = preflight.baseline(conn, org_id, form_id, name, fields,
                                 columns_of(header, swapped), TIMEOUT)
        seconds.append(time.monotonic() - started)
        if frozenset({header[i], header[i + 1]}) in swapped_pairs(out.warnings):
            detected += 1
        elif same >= ALIKE or not any(r[i] or r[i + 1] for r in sample):
            alike += 1
        elif not any(_worded(r[i]) or _worded(r[i + 1]) for r in sample):
            numbers += 1
        else:
            missed += 1
            if SHOW:
                print(f"    missed: {header[i]!r} <-> {header[i + 1]!r}:",
                      [w.detail[:200] for w in out.warnings])
    for _ in range(swaps):
        sample = rng.sample(fresh, min(SAMPLE_ROWS, len(fresh)))
        started = time.monotonic()
        out = preflight.baseline(conn, org_id, form_id, name, fields,
                                 columns_of(header, sample), TIMEOUT)
        seconds.append(time.monotonic() - started)
        flagged += bool(swapped_pairs(out.warnings))
        if SHOW and swapped_pairs(out.warnings):
            print("    false alarm:", out.warnings[0].detail[:300])
    seconds.sort()
    print(f"{name}: {len(stored):,} records stored, {len(header)} text fields")
    print(f"  swaps of adjacent columns: {detected}/{swaps} detected, {alike} of alike or "
          f"blank columns and {numbers} of columns of numbers not judged, {missed} others missed")
    print(f"  clean uploads: {flagged}/{swaps} flagged")
    print(f"  preflight time: median {seconds[len(seconds) // 2] * 1000:.0f} ms, "
          f"max {seconds[-1] * 1000:.0f} ms", flush=True)


def practices() -> list[tuple[str, str]]:
    """(name, E.164 phone) of the NHS practices, as ``demo/files.py`` team_file reads them."""
    seen: set[str] = set()
    out = []
    with realdata.path(realdata.EPRACCUR).open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            name, phone = row[1].strip(), row[17].strip()
            if name and phone and name not in seen:
                try:
                    out.append((name, normalize_phone(phone, "GB")))
                except InvalidValue:
                    continue
                seen.add(name)
    return out


def bench_teams(conn: psycopg2.extensions.connection, org_id: int, shifts: int,
                rng: random.Random) -> None:
    teams = practices()
    known = [t for t in teams if rng.random() < 0.5]
    with conn.cursor() as cur:
        cur.execute(
            "WITH u AS (INSERT INTO collect.field_users (organization_id, phone_e164) "
            "  SELECT %s, p FROM unnest(%s::text[]) p ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT count(*) FROM u", (org_id, sorted({p for _, p in known})))
        cur.execute("INSERT INTO collect.teams (organization_id, name) "
                    "SELECT %s, n FROM unnest(%s::text[]) n", (org_id, [n for n, _ in known]))
        cur.execute(
            "INSERT INTO collect.team_memberships (team_id, user_id, role) "
            "SELECT t.id, u.id, 'manager' FROM unnest(%s::text[], %s::text[]) k(n, p) "
            "JOIN collect.teams t ON t.organization_id = %s AND t.name = k.n "
            "JOIN collect.field_users u ON u.organization_id = %s AND u.phone_e164 = k.p "
            "ON CONFLICT DO NOTHING",
            ([n for n, _ in known], [p for _, p in known], org_id, org_id))
    detected = wrong = missed = flagged = 0
    for shifted in (True, False):
        for _ in range(shifts):
            k = rng.randint(1, 30) if shifted else 0
            start = rng.randrange(k, len(teams) - SAMPLE_ROWS)
            rows = [preflight.TeamRow(2 + j, teams[start + j][0], teams[start + j - k][1])
                    for j in range(SAMPLE_ROWS)]
            out = preflight.teams(conn, org_id, rows, "manager_phone", [], TIMEOUT)
            found = [w for w in out.warnings if w.code == "column-shifted"]
            if not shifted:
                flagged += bool(found)
            elif found and found[0].evidence and found[0].evidence["offset"] == k:
                detected += 1
            elif found:
                wrong += 1
            else:
                missed += 1
    print(f"teams (epraccur.csv): {len(teams):,} practices, {len(known):,} of them stored "
          "as teams with their managers")
    print(f"  phone column shifted by 1-30 rows: {detected}/{shifts} detected with the "
          f"right offset, {wrong} with another, {missed} missed")
    print(f"  unshifted windows: {flagged}/{shifts} flagged", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=50, help="swapped uploads per file")
    parser.add_argument("--shifts", type=int, default=50, help="shifted team windows")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--show", action="store_true", help="print false alarms and misses")
    args = parser.parse_args(argv)
    global SHOW
    SHOW = args.show
    rng = random.Random(args.seed)
    with postgres.running() as server:
        upgrade(server.url)
        conn = connect(server.url, application_name="preflight-bench")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("INSERT INTO collect.organizations (slug, name) VALUES "
                        "('bench', 'Bench') RETURNING id")
            org_id = int(cur.fetchone()[0])  # type: ignore[index]
        for name in (realdata.KARNATAKA, realdata.BLOCKS, realdata.ST_LOUIS,
                     realdata.EPRACCUR):
            bench_baseline(conn, org_id, name, args.swaps, rng)
        bench_teams(conn, org_id, args.shifts, rng)
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
