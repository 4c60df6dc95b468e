"""The validation dry run: what a task would do, found before it runs. Nothing is written.

The checks are the runner's own, reached through its one facade for the API
(:mod:`longtask.runner.rules`): the task's work is built with ``rules.build_work`` and
opened (organization, form, file, header mapping, "no data rows": the same errors, in the
same words, as a run would fail with), and each of the first rows is parsed by the task
type's own row parser. A file whose every
data row is a row error (all of it read) would have nothing written: that is an error
too; when only the rows read are all bad, a warning (``no-rows-written``). ``POST
/v1/tasks`` runs the same dry run and refuses what it finds invalid, with the same errors.

On top, the first rows of each column are tried against the column's target type and the
other columns' types, to warn about columns that look swapped or values that do not parse
(a phone column shifted against its teams shows as phones that do not parse, or blanks,
where a team has none); and a file whose encoding was detected, not checked, is named
with its confidence (``encoding-detected``) so the user can look at its decoded lines.
Then the preflight (:mod:`longtask.api.preflight`) compares the request with the
organization's own stored data (``columns-swapped`` between two text columns,
``column-shifted``, ``unusually-large``), within the statement timeout.

Everything is bounded (:class:`Budget`): rows are sampled up to a number of rows, of
bytes and of seconds (the report's ``sampled`` says how many and which bound stopped
it); each column keeps a few distinct short values and a bounded sample for the swap
checks, never every value; the file's rows are counted up to a number of bytes and within
the same seconds, and scaled from what was counted beyond (``rowsTotalEstimated``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg2.errors
from longtask.api import db, preflight
from longtask.api.files import describe
from longtask.api.problems import FieldError, body_error
from longtask.api.schemas import (
    ColumnReport,
    DryRunWarning,
    FilePublic,
    PreflightReport,
    RowErrorPublic,
    SampleReport,
    TaskCreate,
    ValidationReport,
)
from longtask.runner import rules
from longtask.runner.rules import (
    BaselineUpload,
    BulkSubmissionDelete,
    BulkTeamCreate,
    Export,
    RowError,
)

from longtask import filestore, tasktypes
from longtask.csvsource import CsvFile, Header, Record
from longtask.db import statement_timeout
from longtask.errors import FileUnreadable, HeaderError, TaskFailed
from longtask.settings import RunnerSettings
from longtask.textencoding import label_of
from longtask.values import (
    FieldSpec,
    FieldType,
    InvalidFieldSpec,
    InvalidValue,
    make_parser,
    normalize_header,
    normalize_phone,
    parse_member_phones,
)

log = logging.getLogger("longtask.api.dryrun")

SAMPLES = 5
SAMPLE_CHARS = 60
# Per column, the values the swap checks try against the other columns' types: the first
# KEPT_VALUES, each cut to KEPT_CHARS (a longer one counts as fitting no typed column).
KEPT_VALUES = 500
KEPT_CHARS = 256
# Row errors listed in the report (all are counted), and their values' length.
LISTED_ROW_ERRORS = 500
ERROR_VALUE_CHARS = 200
SAMPLE_BATCH_ROWS = 16  # records read at once: a few MiB at most, whatever the file holds
# A column "fails" its type when fewer than half its values parse, and "fits" another
# type when at least 80% do: far enough apart that a few bad cells do not raise a warning.
FAILS_BELOW = 0.5
FITS_FROM = 0.8
# The preflight's lookups get what is left of the time budget, and at least this.
PREFLIGHT_MIN_SECONDS = 1.0
# A teams file's sampled rows kept for the preflight, with at most this many name cells.
TEAM_NAME_COLUMNS = 4

Parse = Callable[[str], Any]


@dataclass(frozen=True)
class Budget:
    """The bounds of one dry run: data ``rows`` and ``bytes`` (after the header) sampled,
    ``count_bytes`` of the file counted, ``seconds`` of wall time for all of it, and the
    ``statement_timeout`` (seconds) of its queries."""

    rows: int
    bytes: int
    count_bytes: int
    seconds: float
    statement_timeout: float


@dataclass
class _Column:
    """What the dry run learns about one file column, in bounded memory."""

    position: int  # 0-based
    header: str | None
    target: str | None = None
    type: str | None = None
    parse: Parse | None = None
    values: int = 0  # non-blank values seen
    invalid_own: int = 0  # of them, not parsed by ``parse``
    samples: list[str] = field(default_factory=list)  # distinct, cut to SAMPLE_CHARS
    kept: list[str | None] = field(default_factory=list)  # None: longer than KEPT_CHARS

    def add(self, value: str) -> None:
        self.values += 1
        if self.parse is not None and not _parses(self.parse, value):
            self.invalid_own += 1
        if len(self.samples) < SAMPLES and (cut := _cut(value)) not in self.samples:
            self.samples.append(cut)
        if len(self.kept) < KEPT_VALUES:
            self.kept.append(value if len(value) <= KEPT_CHARS else None)

    def share_valid_own(self) -> float:
        return 1.0 if not self.values else 1 - self.invalid_own / self.values

    def share_valid(self, parse: Parse) -> float:
        """The share of the kept values ``parse`` takes (1 when none were kept)."""
        if not self.kept:
            return 1.0
        bad = sum(1 for v in self.kept if v is None or not _parses(parse, v))
        return 1 - bad / len(self.kept)


def _parses(parse: Parse, value: str) -> bool:
    try:
        parse(value)
    except InvalidValue:
        return False
    return True


class _Report:
    """Collects errors (with field paths) and warnings as the checks run."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.warnings: list[DryRunWarning] = []

    def error(self, path: list[str | int], detail: str) -> None:
        self.errors.append(body_error(path, detail) if path else FieldError(detail=detail))

    def warn(self, code: str, detail: str, columns: list[str] | None = None) -> None:
        self.warnings.append(DryRunWarning(code=code, detail=detail, columns=columns or []))

    def add(self, outcome: preflight.Outcome) -> PreflightReport:
        """Take the preflight's warnings; its report."""
        self.warnings.extend(outcome.warnings)
        return outcome.report


def run(conn: db.Connection, request: TaskCreate, budget: Budget) -> ValidationReport:
    """The dry run of ``request`` on ``conn`` (autocommit; its settings are restored),
    within ``budget``: sampling up to ``budget.rows`` data rows and ``budget.bytes``,
    counting up to ``budget.count_bytes``, all within ``budget.seconds``."""
    started = time.monotonic()
    deadline = started + budget.seconds
    report = _Report()
    key = request.concurrency_key
    try:
        params = tasktypes.parse_params(request.type, request.params)
        key = key or tasktypes.default_concurrency_key(request.type, request.organization,
                                                       request.params)
    except tasktypes.ParamsError as exc:
        for path, message in exc.errors:
            report.error(["params", *[p for p in path.split(".") if p]], message)
        return _result(request, key, report)
    if not db.organization_exists(conn, request.organization):
        report.error(["organization"], f"organization {request.organization!r} does not exist")
        return _result(request, key, report)
    form = getattr(params, "form", None)
    if form is not None and not db.form_exists(conn, request.organization, form):
        report.error(["params", "form"],
                     f"form {form!r} does not exist in organization {request.organization!r}")
        return _result(request, key, report)
    file_id: uuid.UUID | None = getattr(params, "file_id", None)
    result = _result(request, key, report)
    if file_id is not None:
        try:
            info = filestore.info(conn, file_id, request.organization)
        except filestore.FileNotFound:
            report.error(["params", "fileId"], f"no file {file_id} for organization "
                         f"{request.organization!r}; upload it with POST /v1/files")
            return _result(request, key, report)
        result.file = describe(conn, info)
        _warn_detected(result.file, report)
    task = rules.TaskDefinition(uid=uuid.uuid4(), type=request.type,
                          organization=request.organization, params=request.params,
                          name=request.name, namespace=None,
                          rate_limit=float(request.rate_limit) if request.rate_limit else None)
    timeout = max(0.1, min(budget.statement_timeout, deadline - time.monotonic()))
    with statement_timeout(conn, timeout):
        # Checks only: no reading thread, no count of the whole file (read_ahead=False).
        work = rules.build_work(task, "run", conn, rules.StopToken(), RunnerSettings(),
                                read_ahead=False)
        try:
            result.rows_total = work.open(None)
        except (HeaderError, FileUnreadable) as exc:
            report.error(["params", "fileId"], str(exc))
        except psycopg2.errors.QueryCanceled:
            report.warn("count-timed-out", f"counting the rows took longer than "
                        f"{timeout:g} s; the task is large")
        except TaskFailed as exc:
            report.error(["params"], str(exc))
        finally:
            work.close()
    if not report.errors:
        if isinstance(work, BaselineUpload | BulkTeamCreate):
            _sample_rows(conn, work, request.organization, budget, started, result, report)
        elif isinstance(work, Export):
            if result.rows_total == 0:
                report.warn("empty-range", "no submission of the form falls in the date range")
            p = work.params
            result.preflight = report.add(preflight.export(
                conn, request.organization, rules.organization_id(conn, request.organization),
                work.form_id, p.form, (p.from_date, p.to_date), result.rows_total,
                _preflight_timeout(budget, deadline)))
        elif isinstance(work, BulkSubmissionDelete):
            if result.rows_total == 0:
                report.warn("empty-range", "no submission of the form falls in the date "
                            "range and matches every where entry")
            elif result.rows_total:
                report.warn("deletes-rows", f"{result.rows_total:,} submissions match and "
                            "would be deleted; a terminate with rollback restores them")
    final = _result(request, key, report)
    return result.model_copy(update={
        "valid": final.valid, "errors": final.errors, "warnings": final.warnings})


def _preflight_timeout(budget: Budget, deadline: float) -> float:
    """The preflight's statement timeout: what is left of the budget, at least
    :data:`PREFLIGHT_MIN_SECONDS`, at most the budget's statement timeout."""
    return min(budget.statement_timeout,
               max(PREFLIGHT_MIN_SECONDS, deadline - time.monotonic()))


def _result(request: TaskCreate, key: str | None, report: _Report) -> ValidationReport:
    return ValidationReport(
        valid=not report.errors, type=request.type, organization=request.organization,
        concurrency_key=key, errors=[e.model_dump(exclude_none=True) for e in report.errors],
        warnings=list(report.warnings),
    )


def _sample_rows(conn: db.Connection, work: BaselineUpload | BulkTeamCreate, org: str,
                 budget: Budget, started: float, result: ValidationReport,
                 report: _Report) -> None:
    """Parse the first records as the run would, within ``budget``; fill columns, row
    errors, warnings, what was sampled, and the file's row count."""
    deadline = started + budget.seconds
    has_header = not isinstance(work, BulkTeamCreate) or work.params.has_header
    info, csv_file = rules.open_csv(conn, work.params.file_id, org, work.settings,
                                    has_header=has_header, delimiter=work.params.delimiter)
    header = csv_file.header()
    form: rules.Form | None = None
    teams: _TeamSample | None = None
    if isinstance(work, BaselineUpload):
        form = rules.load_form(conn, work.org_id, work.params.form)
        columns = _baseline_columns(form, work, header.names)
    else:
        columns = _team_columns(work, header)
        teams = _TeamSample(work, columns)
    width = len(header.names) if has_header else None
    errors: list[RowError] = []
    read = refused = used = 0
    stopped: Literal["end", "rows", "bytes", "seconds"] = "end"
    first = None
    for record in _records(csv_file, header, width):
        if read >= budget.rows:
            stopped = "rows"
        elif record.end.offset - header.end.offset > budget.bytes and read:
            stopped = "bytes"
        elif time.monotonic() >= deadline:
            stopped = "seconds"
        if stopped != "end":
            break
        read += 1
        used = record.end.offset - header.end.offset
        _observe(record, columns)
        if teams is not None:
            teams.observe(record)
        found: list[RowError] = []
        if record.fields is None:
            found.append(RowError(record.line, record.error or "unreadable row",
                                  record.column))
        else:
            work.parse(record, found)  # the runner's own row rules
        if found:
            refused += 1
            first = first or found[0]
            result.row_errors_total += 1
            room = LISTED_ROW_ERRORS - len(errors)
            errors.extend(found[:max(0, room)])
    result.rows_read = read
    result.sampled = SampleReport(rows=read, bytes=used, stopped_by=stopped,
                                  seconds=round(time.monotonic() - started, 3))
    result.row_errors = [RowErrorPublic(line=e.line, column=e.column, reason=e.reason,
                                        value=None if e.value is None
                                        else e.value[:ERROR_VALUE_CHARS])
                         for e in errors]
    listed = sorted(columns.values(), key=lambda c: c.position)
    result.columns = [
        ColumnReport(position=c.position + 1, header=c.header, target=c.target, type=c.type,
                     samples=c.samples, values=c.values, invalid=c.invalid_own)
        for c in listed
    ]
    _warn_swapped(listed, report)
    timeout = _preflight_timeout(budget, deadline)
    if form is not None:
        reported = {frozenset(w.columns) for w in report.warnings
                    if w.code == "columns-swapped"}
        result.preflight = report.add(preflight.baseline(
            conn, work.org_id, form.id, form.name, form.fields,
            [preflight.Column(_label(c), _field_of(c), c.type,
                              [v for v in c.kept if v is not None])
             for c in listed], timeout, reported))
    elif teams is not None:
        result.preflight = report.add(teams.check(conn, work.org_id, timeout))
    if read and refused == read and first is not None:
        _nothing_written(first, read, stopped == "end", report)
    if stopped == "end":
        result.rows_total, result.count_bytes = read, used
    else:
        _count_rows(conn, info, csv_file, header, budget, deadline, result)


def _records(csv_file: CsvFile, header: Header, width: int | None) -> Iterator[Record]:
    """The data records, read a few at a time (a batch holds at most a few MiB)."""
    for batch in csv_file.batches(header.end, width, SAMPLE_BATCH_ROWS):
        for i in range(len(batch)):
            yield batch.record(i)


def _count_rows(conn: db.Connection, info: filestore.FileInfo, csv_file: CsvFile,
                header: Header, budget: Budget, deadline: float,
                result: ValidationReport) -> None:
    """``rowsTotal``: the file's data records, counted up to ``budget.count_bytes`` and the
    deadline, and scaled by the file's size when the count stopped short of its end."""
    start = header.end.offset
    body = max(0, info.size_bytes - start)
    reached = start
    cut = False

    def bounded(offset: int) -> Iterator[bytes]:
        nonlocal reached, cut
        at = offset
        for block in filestore.read_blocks(conn, info, offset):
            if at - start >= budget.count_bytes or time.monotonic() >= deadline:
                cut = True
                return
            at += len(block)
            reached = max(reached, at)
            yield block

    counted = csv_file.count(header.end, source=bounded)
    read = min(reached, info.size_bytes) - start
    result.count_bytes = read
    if not cut or read >= body:
        result.rows_total = counted
    elif read > 0:
        # The last record counted may be cut short: count it as half, as describe() does.
        result.rows_total = max(counted, round((counted - 0.5) * body / read))
        result.rows_total_estimated = True


def _nothing_written(first: RowError, read: int, whole: bool, report: _Report) -> None:
    """Every row read is a row error: an error when that is the whole file, else a warning."""
    where = f"line {first.line}" + (f", column {first.column!r}" if first.column else "")
    if whole:
        report.error(["params", "fileId"],
                     f"none of the file's {read} data rows can be written: each is a row error "
                     f"(the first, {where}: {first.reason}); the task would write nothing")
    else:
        report.warn("no-rows-written",
                    f"none of the first {read} data rows can be written: each is a row error "
                    f"(the first, {where}: {first.reason}); the rest of the file may fare no "
                    "better")


def _warn_detected(file: FilePublic, report: _Report) -> None:
    """Name a detected encoding, with its confidence and lines to check it by."""
    if file.encoding_source != "detected":
        return
    confidence = ("" if file.encoding_confidence is None
                  else f", confidence {file.encoding_confidence:.2f}")
    shown = "; ".join(repr(line) for line in file.decoded_samples[:2])
    report.warn("encoding-detected",
                f"{file.filename} is not UTF-8: it is read as {label_of(file.encoding)} "
                f"(detected{confidence}); check that its lines read right"
                + (f", e.g. {shown}" if shown else "")
                + ". If they do not, upload it again naming its encoding (POST /v1/files"
                "?encoding=...), or save it as 'CSV UTF-8' first")


def _observe(record: Record, columns: dict[int, _Column]) -> None:
    if record.fields is None:
        return
    for position, column in columns.items():
        if position < len(record.fields):
            value = record.fields[position].strip()
            if value:
                column.add(value)


def _baseline_columns(form: rules.Form, work: BaselineUpload,
                      names: list[str]) -> dict[int, _Column]:
    fields = {normalize_header(f.name): f for f in form.fields}
    key = normalize_header(work.params.key_column)
    columns: dict[int, _Column] = {}
    for position, name in enumerate(names):
        column = _Column(position, name)
        norm = normalize_header(name)
        spec = fields.get(norm)
        if norm == key:
            column.target, column.type = f"{work.params.key_column} (key)", "text"
        elif spec is not None:
            column.target, column.type = spec.name, str(spec.type)
            with contextlib.suppress(InvalidFieldSpec):
                column.parse = make_parser(_optional(spec))
        columns[position] = column
    return columns


def _team_columns(work: BulkTeamCreate, header: Header) -> dict[int, _Column]:
    p = work.params
    region = p.default_region
    names = header.names
    index = rules.header_index(header, "file") if names else {}
    roles: list[tuple[str | None, str, str, Parse | None]] = [
        (p.team_column, "team", "text", None),
        (p.manager_phone_column, "manager phone", "phone",
         lambda v: normalize_phone(v, region)),
        (rules.member_phones_ref(p, index), "member phones", "phones",
         lambda v: parse_member_phones(v, region)),
    ]
    columns: dict[int, _Column] = {i: _Column(i, n) for i, n in enumerate(names)}
    for ref, target, type_, parse in roles:
        if ref is None:
            continue
        position = rules.column_of(ref, index, target, "file")
        column = columns.setdefault(position, _Column(position, None))
        column.target, column.type, column.parse = target, type_, parse
    return columns


def _field_of(column: _Column) -> str | None:
    """The form field a baseline column maps to (None for the key and unmapped ones)."""
    if column.target is None or column.target.endswith(" (key)"):
        return None
    return column.target


class _TeamSample:
    """A teams file's sampled rows, aligned (team, manager phone, name cells), for the
    preflight's shift check."""

    def __init__(self, work: BulkTeamCreate, columns: dict[int, _Column]) -> None:
        self.region = work.params.default_region
        by_target = {c.target: c for c in columns.values()}
        self.team = by_target["team"].position
        phone = by_target["manager phone"]
        self.phone, self.phone_label = phone.position, _label(phone)
        taken = {c.position for c in columns.values() if c.target is not None}
        headers = [c.header for c in sorted(columns.values(), key=lambda c: c.position)]
        self.names = preflight.name_columns(headers, taken)[:TEAM_NAME_COLUMNS]
        self.name_labels = [_label(columns[p]) for p in self.names]
        self.rows: list[preflight.TeamRow] = []

    def observe(self, record: Record) -> None:
        fields = record.fields
        if fields is None or max(self.team, self.phone) >= len(fields):
            return
        team = " ".join(fields[self.team].split())
        if not team:
            return
        try:
            phone: str | None = normalize_phone(fields[self.phone], self.region)
        except InvalidValue:
            phone = None
        names = tuple(fields[p].strip()[:KEPT_CHARS] if p < len(fields) else ""
                      for p in self.names)
        self.rows.append(preflight.TeamRow(record.line, team[:KEPT_CHARS], phone, names))

    def check(self, conn: db.Connection, org_id: int, timeout: float) -> preflight.Outcome:
        """The preflight of the rows sampled (:func:`longtask.api.preflight.teams`)."""
        return preflight.teams(conn, org_id, self.rows, self.phone_label, self.name_labels,
                               timeout)


def _optional(spec: FieldSpec) -> FieldSpec:
    return FieldSpec(spec.name, spec.type, False, spec.options)


def _cut(value: str) -> str:
    return value if len(value) <= SAMPLE_CHARS else value[: SAMPLE_CHARS - 1] + "…"


def _label(column: _Column) -> str:
    return column.header or f"#{column.position + 1}"


# Words in a header that say the column holds codes, numbers, phones or dates even when
# its field is text: such a column is a less likely swap partner than a "name" column.
_TYPED_WORDS = frozenset({"code", "id", "no", "number", "num", "phone", "mobile", "tel",
                          "date", "year", "count", "pin", "zip", "postcode", "census"})


def _names_typed_content(column: _Column) -> bool:
    words = re.split(r"[^0-9a-z]+", normalize_header(column.header or ""))
    return bool(_TYPED_WORDS.intersection(words))


def _partner(column: _Column, columns: list[_Column], taken: set[int]) -> _Column | None:
    """The column ``column`` was most likely swapped with, or ``None`` when none stands out.

    A typed column that fails its own type while fitting ``column``'s, and the other way
    round, is a sure partner. Otherwise a text column whose values fit ``column``'s type,
    preferring one whose header does not itself promise such values ("District Name"
    holding numbers, rather than "Census Code"); two equally likely ones make no partner.
    """
    assert column.parse is not None
    fits = [o for o in columns if o is not column and o.values and o.position not in taken
            and o.share_valid(column.parse) >= FITS_FROM]
    mutual = [o for o in fits if o.parse is not None and o.type != str(FieldType.TEXT)
              and o.share_valid_own() < FAILS_BELOW and column.share_valid(o.parse) >= FITS_FROM]
    if len(mutual) == 1:
        return mutual[0]
    text = [o for o in fits if o.parse is None or o.type == str(FieldType.TEXT)]
    plain = [o for o in text if not _names_typed_content(o)]
    ranked = plain or text
    return ranked[0] if len(ranked) == 1 else None


def _warn_swapped(columns: list[_Column], report: _Report) -> None:
    """Warn where a column's values fail its type but fit another column's type.

    Two columns that look swapped are reported once (``columns-swapped``); a column whose
    values fail its type with no clear partner is reported as ``invalid-values``, and so
    is a column where only some values fail.
    """
    typed = [c for c in columns if c.parse is not None and c.type != str(FieldType.TEXT)
             and c.values]
    reported: set[int] = set()
    for column in typed:
        assert column.parse is not None
        if column.position in reported or column.share_valid_own() >= FAILS_BELOW:
            continue
        partner = _partner(column, columns, reported)
        bad = column.invalid_own
        if partner is None:
            continue
        reported |= {column.position, partner.position}
        report.warn(
            "columns-swapped",
            f"columns {_label(column)!r} and {_label(partner)!r} look swapped: "
            f"{bad} of {column.values} values of {_label(column)!r} are not "
            f"{column.type} values, while {_label(partner)!r} holds {column.type} values",
            [_label(column), _label(partner)],
        )
    for column in typed:
        assert column.parse is not None
        if column.position in reported:
            continue
        bad = column.invalid_own
        if bad:
            report.warn(
                "invalid-values",
                f"{bad} of {column.values} values in column {_label(column)!r} are not "
                f"valid {column.type} values (target {column.target})",
                [_label(column)],
            )
