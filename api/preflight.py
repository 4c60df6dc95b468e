"""The preflight: a request compared with what its organization already has.

The dry run (:mod:`longtask.api.dryrun`) checks a file against its form; the preflight
checks it against the organization's own stored data, where the mistakes of the three
cases show although every value is valid:

- **BaselineUpload** (``columns-swapped``): each mapped text column's first sampled values
  that hold a letter are looked up among the values each text field of the form already
  stores for this organization: first among :data:`SOME_RECORDS` of the form's records,
  then one GIN probe per field and value for the others (``@> {"org/form": {"field":
  value}}``, migration 0006). A column whose values are stored values of another field
  far more often than of its own field is named with that field's column, with the
  counts (``values-of-another-field`` when that field has no column in the file).
- **Export** (``unusually-large``): the row count against the median of the
  organization's last succeeded exports of the same form, and the date span asked for
  against the span of the form's submissions.
- **BulkTeamCreate** (``column-shifted``): the sampled rows' teams that exist already, and
  the users named in a name column, give phones the organization knows for a row; the
  offset that puts those phones on their rows, when it is not 0, is the shift.

Every query is filtered by the caller's organization (and form): another organization's
data never counts and never appears. Bounded: a sample (the dry run's rows, at most
:data:`SAMPLE_VALUES` values a column), at most :data:`MAX_PROBES` index lookups, and a
statement timeout; a lookup that runs out of time gives a ``preflight-timed-out``
warning, never an error. With nothing stored (a first upload, a first export) there is
nothing to compare with: the report says so (``preflight.compared: false``).
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg2.errors
from longtask.api import db
from longtask.api.schemas import DryRunWarning, PreflightReport

from longtask.db import statement_timeout
from longtask.values import FieldSpec, normalize_header

# Baseline: values of a column looked up (its first non-blank ones), the index lookups
# one dry run makes at most (fewer values a column when the form is wide), and lookups
# sent in one statement.
SAMPLE_VALUES = 50
MIN_VALUES = 10  # a column with fewer sampled values is not judged
MAX_PROBES = 8000
PROBES_PER_STATEMENT = 1000
# A column "holds another field's values" when at least MATCH_FROM of its sampled values
# are stored values of that field and FAR_BETTER times as many as of its own field's.
MATCH_FROM = 0.5
FAR_BETTER = 3.0
# Field types whose stored values are the text a column holds.
TEXT_TYPES = frozenset({"text", "select_one"})

# Export: the recent exports compared with, how many are needed, and the factor of
# their median past which an export is unusually large.
RECENT_EXPORTS = 10
MIN_PREVIOUS_EXPORTS = 3
LARGE_FACTOR = 5.0

# Teams: offsets tried (each way), rows that must line up at the best offset, and how
# much better than in place it must be.
MAX_OFFSET = 50
MIN_ALIGNED = 5
ALIGNED_FROM = 0.5


@dataclass(frozen=True)
class Column:
    """A file column as the dry run sampled it: ``header``, the form ``field`` it maps to
    and that field's ``type`` (None when unmapped), its first non-blank ``values``."""

    header: str
    field: str | None
    type: str | None
    values: list[str]


@dataclass(frozen=True)
class TeamRow:
    """A sampled row of a teams file: its ``line``, team name, manager phone in E.164
    (None when it does not parse) and the cells of the file's name ``columns``
    (stripped, in the order of :func:`teams`'s ``name_columns``)."""

    line: int
    team: str
    phone: str | None
    names: tuple[str, ...] = ()


@dataclass
class Outcome:
    """The preflight's warnings and its report."""

    warnings: list[DryRunWarning] = field(default_factory=list)
    report: PreflightReport = field(
        default_factory=lambda: PreflightReport(compared=False, detail="not run"))


class _Clock:
    """The preflight's lookups and wall time."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lookups = 0

    def report(self, compared: bool, detail: str) -> PreflightReport:
        return PreflightReport(compared=compared, detail=detail, lookups=self.lookups,
                               seconds=round(time.monotonic() - self.started, 3))


def _timed_out(clock: _Clock, seconds: float, what: str) -> Outcome:
    detail = (f"the preflight's lookups of {what} took longer than {seconds:g} s (the "
              "statement timeout) and were cancelled; nothing was compared")
    return Outcome([DryRunWarning(code="preflight-timed-out", detail=detail)],
                   clock.report(False, detail))


# ---------------------------------------------------------------------------- baseline


def baseline(conn: db.Connection, org_id: int, form_id: int, form: str,
             fields: Sequence[FieldSpec], columns: Sequence[Column], timeout: float,
             reported: set[frozenset[str]] | None = None) -> Outcome:
    """``columns-swapped`` warnings for ``columns`` (of a file for form ``form``, id
    ``form_id``, of organization ``org_id``) against the values its text ``fields``
    store; ``reported``: pairs of headers already warned about (left out). Lookups run
    within ``timeout`` seconds (statement timeout)."""
    clock = _Clock()
    candidates = [f.name for f in fields if str(f.type) in TEXT_TYPES]
    worded = [Column(c.header, c.field, c.type, [v for v in c.values if _has_letter(v)])
              for c in columns if c.field in candidates]
    judged = [c for c in worded if len(c.values) >= MIN_VALUES]
    if len(candidates) < 2 or not judged:
        return Outcome(report=clock.report(
            False, f"form {form!r} has no two text fields with sampled values to compare"))
    per_column = SAMPLE_VALUES
    while per_column > MIN_VALUES and _probe_count(judged, candidates, per_column) > MAX_PROBES:
        per_column = max(MIN_VALUES, per_column // 2)
    # Still too many (a very wide form): judge fewer columns, each against every field,
    # rather than leave some of a column's lookups out (which would undercount a field).
    unjudged = 0
    while len(judged) > 1 and _probe_count(judged, candidates, per_column) > MAX_PROBES:
        judged.pop()
        unjudged += 1
    samples = {c.header: c.values[:per_column] for c in judged}
    probes = sorted({(y, v) for c in judged for v in samples[c.header] for y in candidates})
    deadline = clock.started + timeout  # for all of the statements together
    try:
        with statement_timeout(conn, timeout):
            if not _has_records(conn, org_id, form_id):
                clock.lookups += 1
                return Outcome(report=clock.report(
                    False, f"the organization has no stored records of form {form!r}: "
                    "nothing to compare the columns with (a first upload)"))
            clock.lookups += 1
            hits = _stored(conn, org_id, form_id, probes, clock, deadline)
    except (psycopg2.errors.QueryCanceled, _OutOfTime):
        return _timed_out(clock, timeout, f"form {form!r}'s stored values")
    by_field = {c.field: c for c in columns if c.field in candidates}
    found: list[tuple[float, Column, str, int, int, list[str]]] = []
    for column in judged:
        values = samples[column.header]
        own = sum(1 for v in values if (column.field, v) in hits)
        best, best_count = None, 0
        for other in candidates:
            if other == column.field:
                continue
            count = sum(1 for v in values if (other, v) in hits)
            if count > best_count:
                best, best_count = other, count
        if (best is not None and best_count >= MATCH_FROM * len(values)
                and best_count >= FAR_BETTER * own):
            examples = [v for v in dict.fromkeys(values)
                        if (best, v) in hits and (column.field, v) not in hits][:3]
            found.append(((best_count - own) / len(values), column, best, best_count, own,
                          examples))
    # A partner column left unjudged (its values are numbers) is looked up too, against
    # the two fields of the pair only, so the evidence shows both sides.
    extra = sorted({(f, v) for _s, column, other, *_rest in found
                    if (partner := by_field.get(other)) is not None
                    and partner.header not in samples
                    for v in partner.values[:per_column] for f in (other, column.field)
                    if f is not None})
    if extra:
        try:
            with statement_timeout(conn, timeout):
                hits |= _stored(conn, org_id, form_id, extra[:MAX_PROBES], clock, deadline)
        except (psycopg2.errors.QueryCanceled, _OutOfTime):
            return _timed_out(clock, timeout, f"form {form!r}'s stored values")
    warnings: list[DryRunWarning] = []
    done = set(reported or ())
    for _strength, column, other, count, own, examples in sorted(
            found, key=lambda f: -f[0]):
        assert column.field is not None
        partner = by_field.get(other)
        partner_header = partner.header if partner is not None else None
        pair = frozenset({column.header, partner_header or other})
        if pair in done:
            continue
        done.add(pair)
        n = len(samples[column.header])
        sides = [{"column": column.header, "field": column.field, "sampled": n,
                  "storedAsOwnField": own, "storedAsOtherField": count, "otherField": other,
                  "examples": examples}]
        detail = (f"{count} of {n} values of {column.header!r} are stored {other!r} values, "
                  f"{own} are {column.field!r} values")
        if examples:
            detail += f" (e.g. {', '.join(repr(e) for e in examples)})"
        if partner is not None:
            back = samples.get(partner.header) or partner.values[:per_column]
            back_own = sum(1 for v in back if (other, v) in hits)
            back_other = sum(1 for v in back if (column.field, v) in hits)
            sides.append({"column": partner.header, "field": other, "sampled": len(back),
                          "storedAsOwnField": back_own, "storedAsOtherField": back_other,
                          "otherField": column.field})
            detail += (f"; {back_other} of {len(back)} values of {partner.header!r} are "
                       f"stored {column.field!r} values, {back_own} are {other!r} values")
            text = (f"columns {column.header!r} and {partner.header!r} look swapped, "
                    f"compared with the organization's stored records of form {form!r}: "
                    + detail)
            code, named = "columns-swapped", [column.header, partner.header]
        else:
            text = (f"column {column.header!r} holds the values of field {other!r}, "
                    f"compared with the organization's stored records of form {form!r}: "
                    + detail)
            code, named = "values-of-another-field", [column.header]
        warnings.append(DryRunWarning(code=code, detail=text, columns=named, evidence={
            "comparedWith": f"stored records of form {form!r}", "columns": sides,
            "matchFrom": MATCH_FROM, "farBetter": FAR_BETTER}))
    compared = (f"compared {len(judged)} text columns' first {per_column} values with the "
                f"values {len(candidates)} text fields of form {form!r} store"
                + (f"; {unjudged} more columns were not judged, to keep within "
                   f"{MAX_PROBES} lookups" if unjudged else ""))
    return Outcome(warnings, clock.report(True, compared))


def _has_letter(value: str) -> bool:
    """Whether ``value`` holds a letter: numbers and codes made of digits coincide across
    fields (a serial number 603 is also some district's code), so they are no evidence
    of which field a value belongs to."""
    return any(ch.isalpha() for ch in value)


def _probe_count(columns: Sequence[Column], candidates: Sequence[str], per: int) -> int:
    return sum(len(set(c.values[:per])) for c in columns) * len(candidates)


def _has_records(conn: db.Connection, org_id: int, form_id: int) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM collect.baseline_records "
                    "WHERE organization_id = %s AND form_id = %s)", (org_id, form_id))
        return bool(cur.fetchone()[0])  # type: ignore[index]


# A few of the form's records (the first in external-id order: an index range, however
# many it stores), whose values answer the lookups of the values the form holds often.
_SOME_RECORDS = """
SELECT data FROM collect.baseline_records WHERE organization_id = %s AND form_id = %s
ORDER BY external_id LIMIT %s
"""

# One GIN probe a (field, value) for the others: does a record of this organization's
# form store it? The indexed expression (migration 0006) puts each record's data under
# the key "organization/form", so a probe's posting list holds this form's records only.
# The statement runs with ``enable_seqscan`` off (and JIT, whose compiling would take
# longer than the lookups) and compares the organization and form
# as ``+ 0`` expressions as well, so that no plan walks the form's records looking for
# the value instead (as many rows as the form holds, for each value it does not hold).
_STORED = """
SELECT p.i FROM unnest(%s::text[]::jsonb[]) WITH ORDINALITY AS p(probe, i)
WHERE EXISTS (
    SELECT 1 FROM collect.baseline_records b
    WHERE jsonb_set('{}'::jsonb, ARRAY[b.organization_id::text || '/' || b.form_id::text],
                    b.data) @> p.probe
      AND b.organization_id + 0 = %s AND b.form_id + 0 = %s)
"""
SOME_RECORDS = 2000


class _OutOfTime(Exception):
    """The lookups' statements together took longer than the preflight's timeout."""


def _stored(conn: db.Connection, org_id: int, form_id: int,
            probes: Sequence[tuple[str, str]], clock: _Clock,
            deadline: float) -> set[tuple[str, str]]:
    """The ``(field, value)`` pairs of ``probes`` some record of the form stores: those
    among :data:`SOME_RECORDS` of its records, then one index probe for each other;
    :class:`_OutOfTime` once ``deadline`` (monotonic seconds) has passed between two
    statements (each statement is bounded by the statement timeout)."""
    wanted = set(probes)
    out: set[tuple[str, str]] = set()
    with conn.cursor() as cur:
        cur.execute(_SOME_RECORDS, (org_id, form_id, SOME_RECORDS))
        clock.lookups += 1
        for (data,) in cur:
            if isinstance(data, dict):
                out.update(p for p in ((f, v) for f, v in data.items() if isinstance(v, str))
                           if p in wanted)
        left = sorted(wanted - out)
        key = f"{org_id}/{form_id}"
        cur.execute("SET enable_seqscan = off; SET jit = off")
        try:
            for at in range(0, len(left), PROBES_PER_STATEMENT):
                if time.monotonic() >= deadline:
                    raise _OutOfTime
                batch = left[at:at + PROBES_PER_STATEMENT]
                cur.execute(_STORED, ([json.dumps({key: {f: v}}) for f, v in batch], org_id,
                                      form_id))
                out.update(batch[i - 1] for (i,) in cur.fetchall())
                clock.lookups += len(batch)
        finally:
            cur.execute("RESET enable_seqscan; RESET jit")
    return out


# ------------------------------------------------------------------------------ export


def export(conn: db.Connection, organization: str, org_id: int, form_id: int, form: str,
           asked: tuple[dt.date, dt.date], rows: int | None, timeout: float) -> Outcome:
    """``unusually-large`` when ``rows`` (the dry run's count for the days ``asked``,
    both included) is more than :data:`LARGE_FACTOR` times the median row count of the
    organization's last :data:`RECENT_EXPORTS` succeeded exports of ``form`` (at least
    :data:`MIN_PREVIOUS_EXPORTS` of them), with the span of the form's submissions."""
    clock = _Clock()
    try:
        with statement_timeout(conn, timeout), conn.cursor() as cur:
            cur.execute(
                "SELECT total FROM longtask.tasks WHERE organization = %s AND type = 'Export' "
                "AND params->>'form' = %s AND run_status = 'succeeded' AND total IS NOT NULL "
                "ORDER BY created_at DESC LIMIT %s", (organization, form, RECENT_EXPORTS))
            previous = [int(r[0]) for r in cur.fetchall()]
            cur.execute("SELECT min(submitted_at), max(submitted_at) FROM collect.submissions "
                        "WHERE organization_id = %s AND form_id = %s", (org_id, form_id))
            first, last = cur.fetchone()  # type: ignore[misc]
            clock.lookups += 2
    except psycopg2.errors.QueryCanceled:
        return _timed_out(clock, timeout, f"the previous exports of form {form!r}")
    span = (f"it asks for {asked[0]} – {asked[1]}; the form's submissions span "
            + (f"{first:%Y-%m-%d} – {last:%Y-%m-%d}" if first is not None else "nothing yet"))
    data_span = ({"first": first.isoformat(), "last": last.isoformat()}
                 if first is not None else None)
    evidence = {"rows": rows, "previousExports": previous, "factor": LARGE_FACTOR,
                "asked": {"from": asked[0].isoformat(), "to": asked[1].isoformat()},
                "dataSpan": data_span}
    if len(previous) < MIN_PREVIOUS_EXPORTS:
        return Outcome(report=clock.report(
            False, f"the organization has {len(previous)} succeeded exports of form {form!r} "
            f"(at least {MIN_PREVIOUS_EXPORTS} are compared with); " + span))
    median = statistics.median(previous)
    evidence["medianRows"] = median
    if rows is None:
        return Outcome(report=clock.report(
            False, "the rows could not be counted in time; the previous exports' median is "
            f"{median:,.0f} rows; " + span))
    ratio = rows / median if median else float("inf")
    evidence["ratio"] = round(ratio, 2) if median else None
    compared = (f"{rows:,} rows against the median {median:,.0f} of the organization's last "
                f"{len(previous)} exports of form {form!r}; " + span)
    if rows <= LARGE_FACTOR * median:
        return Outcome(report=clock.report(True, compared))
    times = f"{ratio:.1f}×" if median else "more than"
    detail = (f"this export would write {rows:,} rows, {times} the median ({median:,.0f}) of "
              f"the organization's last {len(previous)} exports of form {form!r} (warned past "
              f"{LARGE_FACTOR:g}×); {span}")
    return Outcome([DryRunWarning(code="unusually-large", detail=detail, evidence=evidence)],
                   clock.report(True, compared))


# ------------------------------------------------------------------------------- teams


def teams(conn: db.Connection, org_id: int, rows: Sequence[TeamRow], phone_column: str,
          name_columns: Sequence[str], timeout: float) -> Outcome:
    """``column-shifted`` when the phones the organization already knows for the sampled
    ``rows`` (the stored manager of a row's team; the users called by a row's cell in a
    ``name_columns`` column) line up at an offset other than 0 in ``phone_column``."""
    clock = _Clock()
    teams_ = sorted({r.team for r in rows})
    names = sorted({n for r in rows for n in r.names if n})
    try:
        with statement_timeout(conn, timeout), conn.cursor() as cur:
            cur.execute(
                "SELECT t.name, u.phone_e164 FROM collect.teams t "
                "JOIN collect.team_memberships m ON m.team_id = t.id AND m.role = 'manager' "
                "JOIN collect.field_users u ON u.id = m.user_id AND u.organization_id = %s "
                "WHERE t.organization_id = %s AND t.name = ANY(%s)", (org_id, org_id, teams_))
            managers: dict[str, set[str]] = {}
            for name, phone in cur.fetchall():
                managers.setdefault(name, set()).add(phone)
            users: dict[str, set[str]] = {}
            if names:
                cur.execute("SELECT name, phone_e164 FROM collect.field_users "
                            "WHERE organization_id = %s AND name = ANY(%s)", (org_id, names))
                for name, phone in cur.fetchall():
                    users.setdefault(name, set()).add(phone)
            clock.lookups += len(teams_) + len(names)
    except psycopg2.errors.QueryCanceled:
        return _timed_out(clock, timeout, "the organization's teams and users")
    known = [managers.get(r.team, set()).union(*(users.get(n, set()) for n in r.names))
             for r in rows]
    anchored = sum(1 for k in known if k)
    if anchored < MIN_ALIGNED:
        return Outcome(report=clock.report(
            False, f"{anchored} of the {len(rows)} sampled rows name a team or user the "
            "organization already has: too few to tell whether the phones are on their rows"))
    limit = min(MAX_OFFSET, len(rows) - 1)
    scores = {k: _aligned(rows, known, k) for k in range(-limit, limit + 1)}
    in_place = scores[0]
    best = max(scores, key=lambda k: (scores[k], -abs(k)))
    compared = (f"{anchored} of {len(rows)} sampled rows have a phone the organization "
                f"knows; {in_place} of them hold it on their own row")
    reachable = sum(1 for i, k in enumerate(known) if k and 0 <= i + best < len(rows))
    if (best == 0 or scores[best] < MIN_ALIGNED or scores[best] < ALIGNED_FROM * reachable
            or scores[best] < FAR_BETTER * in_place):
        return Outcome(report=clock.report(True, compared))
    runner_up = max((k for k in scores if k != best), key=lambda k: (scores[k], -abs(k)))
    example = next(i for i, k in enumerate(known)
                   if k and 0 <= i + best < len(rows) and rows[i + best].phone in k)
    row, moved = rows[example], rows[example + best]
    way = "down" if best > 0 else "up"
    detail = (f"column {phone_column!r} looks shifted {way} by {abs(best)} rows: for "
              f"{scores[best]} of {reachable} sampled rows whose team or user the "
              f"organization already has, the phone it has for them is {abs(best)} rows "
              f"{'further down' if best > 0 else 'higher up'}; {in_place} are on their own "
              f"row (e.g. team {row.team!r} on line {row.line}: its stored phone "
              f"{moved.phone} is on line {moved.line})")
    return Outcome([DryRunWarning(
        code="column-shifted", detail=detail, columns=[phone_column], evidence={
            "offset": best, "rowsSampled": len(rows), "rowsWithStoredPhone": anchored,
            "alignedAtOffset": scores[best], "alignedInPlace": in_place,
            "runnerUp": {"offset": runner_up, "aligned": scores[runner_up]},
            "example": {"line": row.line, "team": row.team, "storedPhone": moved.phone,
                        "onLine": moved.line}})],
        clock.report(True, compared))


def _aligned(rows: Sequence[TeamRow], known: Sequence[set[str]], offset: int) -> int:
    """Rows whose known phones include the phone ``offset`` rows below them."""
    n = len(rows)
    return sum(1 for i, k in enumerate(known)
               if k and 0 <= i + offset < n and rows[i + offset].phone in k)


def name_columns(headers: Sequence[str | None], taken: set[int]) -> list[int]:
    """Positions of the columns (not in ``taken``) whose header says they hold a name
    (``manager_name``, ``Name``): their cells are looked up among the stored users."""
    out = []
    for position, header in enumerate(headers):
        words = normalize_header(header or "").replace("_", " ").split()
        if position not in taken and "name" in words:
            out.append(position)
    return out
