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
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2.errors
from longtask.api import db
from longtask.api.files import describe
from longtask.api.problems import FieldError, body_error
from longtask.api.schemas import (
    ColumnReport,
    DryRunWarning,
    FilePublic,
    RowErrorPublic,
    TaskCreate,
    ValidationReport,
)
from longtask.runner import rules
from longtask.runner.rules import BaselineUpload, BulkTeamCreate, Export, RowError

from longtask import filestore, tasktypes
from longtask.csvsource import Header, Record
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
# A column "fails" its type when fewer than half its values parse, and "fits" another
# type when at least 80% do: far enough apart that a few bad cells do not raise a warning.
FAILS_BELOW = 0.5
FITS_FROM = 0.8

Parse = Callable[[str], Any]


@dataclass
class _Column:
    """What the dry run learns about one file column."""

    position: int  # 0-based
    header: str | None
    target: str | None = None
    type: str | None = None
    parse: Parse | None = None
    values: list[str] = field(default_factory=list)

    def invalid(self, parse: Parse) -> int:
        return sum(1 for v in self.values if not _parses(parse, v))

    def share_valid(self, parse: Parse) -> float:
        if not self.values:
            return 1.0
        return 1 - self.invalid(parse) / len(self.values)


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


def run(conn: db.Connection, request: TaskCreate, *, rows: int, statement_timeout: float,
        connect: rules.Connector | None = None) -> ValidationReport:
    """The dry run of ``request`` on ``conn`` (autocommit; its settings are restored),
    reading and parsing up to ``rows`` data rows.

    ``connect`` opens a read connection on which a file's rows are counted beside the
    checks (and the count given up when they end: ``rowsTotal`` is then null); without
    it they are counted on ``conn`` first.
    """
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
    with _statement_timeout(conn, statement_timeout):
        work = rules.build_work(task, "run", conn, rules.StopToken(), RunnerSettings(), connect)
        try:
            result.rows_total = work.open(None)
        except (HeaderError, FileUnreadable) as exc:
            report.error(["params", "fileId"], str(exc))
        except psycopg2.errors.QueryCanceled:
            report.warn("count-timed-out", f"counting the rows took longer than "
                        f"{statement_timeout:g} s; the task is large")
        except TaskFailed as exc:
            report.error(["params"], str(exc))
        finally:
            work.close()
    if not report.errors:
        if isinstance(work, BaselineUpload | BulkTeamCreate):
            _sample_rows(conn, work, request.organization, rows, result, report)
        elif isinstance(work, Export) and result.rows_total == 0:
            report.warn("empty-range", "no submission of the form falls in the date range")
    final = _result(request, key, report)
    return result.model_copy(update={
        "valid": final.valid, "errors": final.errors, "warnings": final.warnings})


def _result(request: TaskCreate, key: str | None, report: _Report) -> ValidationReport:
    return ValidationReport(
        valid=not report.errors, type=request.type, organization=request.organization,
        concurrency_key=key, errors=[e.model_dump(exclude_none=True) for e in report.errors],
        warnings=list(report.warnings),
    )


@contextlib.contextmanager
def _statement_timeout(conn: db.Connection, seconds: float) -> Iterator[None]:
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = %s", (f"{int(seconds * 1000)}ms",))
    try:
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute("RESET statement_timeout")


def _sample_rows(conn: db.Connection, work: BaselineUpload | BulkTeamCreate, org: str,
                 rows: int, result: ValidationReport, report: _Report) -> None:
    """Parse the first ``rows`` records as the run would; fill columns, row errors, warnings."""
    has_header = not isinstance(work, BulkTeamCreate) or work.params.has_header
    _info, csv_file = rules.open_csv(conn, work.params.file_id, org, work.settings,
                                      has_header=has_header)
    header = csv_file.header()
    columns = (_baseline_columns(conn, work, header.names, org)
               if isinstance(work, BaselineUpload) else _team_columns(work, header))
    width = len(header.names) if has_header else None
    errors: list[RowError] = []
    read = refused = 0
    whole = True  # every data row of the file was read
    for record in csv_file.records(header.end, width):
        if read >= rows:
            whole = False
            break
        read += 1
        _observe(record, columns)
        before = len(errors)
        if record.fields is None:
            errors.append(RowError(record.line, record.error or "unreadable row",
                                   record.column))
        else:
            work.parse(record, errors)  # the runner's own row rules
        refused += len(errors) > before
    result.rows_read = read
    result.row_errors = [RowErrorPublic(line=e.line, column=e.column, reason=e.reason,
                                        value=e.value) for e in errors]
    listed = sorted(columns.values(), key=lambda c: c.position)
    result.columns = [
        ColumnReport(position=c.position + 1, header=c.header, target=c.target, type=c.type,
                     samples=[_cut(v) for v in c.values[:SAMPLES]], values=len(c.values),
                     invalid=c.invalid(c.parse) if c.parse else 0)
        for c in listed
    ]
    _warn_swapped(listed, report)
    if read and refused == read:
        _nothing_written(errors[0], read, whole, report)


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
                column.values.append(value)


def _baseline_columns(conn: db.Connection, work: BaselineUpload, names: list[str],
                      org: str) -> dict[int, _Column]:
    form = rules.load_form(conn, rules.organization_id(conn, org), work.params.form)
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
              and o.share_valid(o.parse) < FAILS_BELOW and column.share_valid(o.parse) >= FITS_FROM]
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
        if column.position in reported or column.share_valid(column.parse) >= FAILS_BELOW:
            continue
        partner = _partner(column, columns, reported)
        bad = column.invalid(column.parse)
        if partner is None:
            continue
        reported |= {column.position, partner.position}
        report.warn(
            "columns-swapped",
            f"columns {_label(column)!r} and {_label(partner)!r} look swapped: "
            f"{bad} of {len(column.values)} values of {_label(column)!r} are not "
            f"{column.type} values, while {_label(partner)!r} holds {column.type} values",
            [_label(column), _label(partner)],
        )
    for column in typed:
        assert column.parse is not None
        if column.position in reported:
            continue
        bad = column.invalid(column.parse)
        if bad:
            report.warn(
                "invalid-values",
                f"{bad} of {len(column.values)} values in column {_label(column)!r} are not "
                f"valid {column.type} values (target {column.target})",
                [_label(column)],
            )
