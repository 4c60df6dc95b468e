"""The task-type registry: each type's name, parameter schema and default concurrency key.

``spec.params`` of a LongTask is validated against the type's pydantic model, in the API
(before the resource exists), in the operator (before a Job is made) and in the runner
(before any write). The four built-in types are registered here; other distributions add
theirs through the entry-point group :data:`ENTRY_POINT_GROUP` (``longtask.task_types``),
each entry a :class:`TaskType`, loaded when this module is first imported, so the API, the
operator and the runner know a new type without a change of theirs
(``docs/task-types.md`` is the guide).
"""

from __future__ import annotations

import calendar
import datetime as dt
import importlib.metadata
import re
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel


class ParamsError(ValueError):
    """``spec.params`` does not fit the type's schema.

    ``errors`` lists ``(field path, message)`` pairs, paths in camelCase as on the wire.
    """

    def __init__(self, task_type: str, errors: list[tuple[str, str]]) -> None:
        self.task_type = task_type
        self.errors = errors
        detail = "; ".join(f"{path or '<params>'}: {msg}" for path, msg in errors)
        super().__init__(f"invalid params for {task_type}: {detail}")


class UnknownTaskType(ValueError):
    """``spec.type`` names no registered task type."""


class _Params(BaseModel):
    """Base of every parameter model: camelCase on the wire, unknown keys refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


_COLUMN_REF = re.compile(r"^#[1-9][0-9]{0,3}$")


Delimiter = Literal[",", ";", "\t", "|"]
"""A CSV file's delimiter (:data:`longtask.csvsource.DELIMITERS`)."""
DELIMITER_DESCRIPTION = (
    "The CSV file's delimiter: ',', ';', tab or '|'; null (the default): detected from the "
    "header line")


class UploadMode(StrEnum):
    """How a baseline upload treats a row whose external id already exists."""

    INSERT = "insert"  # existing id -> row error, the stored row is left alone
    UPSERT = "upsert"  # existing id -> updated, its before-image journaled for rollback


class BaselineUploadParams(_Params):
    """Load a CSV into the baseline records of one form.

    ``keyColumn`` names the CSV column holding the external id (unique per organization and
    form). Columns are matched to the form's fields by header name, forgiving about case,
    spaces and a UTF-8 BOM.
    """

    form: str = Field(min_length=1, max_length=200, description="Form name in the organization")
    file_id: uuid.UUID = Field(description="Id of a file in the file store")
    mode: UploadMode = UploadMode.INSERT
    key_column: str = Field(default="external_id", min_length=1, max_length=200)
    max_row_errors: int = Field(
        default=1000, ge=0, description="The task fails once more rows than this are bad"
    )
    delimiter: Delimiter | None = Field(default=None, description=DELIMITER_DESCRIPTION)


_ISO_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
_ISO_DATE_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]")


def parse_date(value: Any) -> dt.date:
    """A calendar date written ``YYYY-MM-DD`` (ISO 8601's extended form), or a ``date``.

    Raises ``ValueError`` saying, in terms of dates, what is wrong: another shape, a date
    and time, a number (no Unix timestamps), a month or day that does not exist.
    """
    if isinstance(value, dt.datetime):
        raise ValueError(f"{value.isoformat()} is a date and time: give the date alone, "
                         "as YYYY-MM-DD")
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        shown = "null" if value is None else type(value).__name__
        raise ValueError(f"a date is written as a string YYYY-MM-DD (e.g. \"2017-08-01\"), "
                         f"not {shown}")
    text = value.strip()
    match = _ISO_DATE.match(text)
    if match is None:
        if _ISO_DATE_TIME.match(text):
            raise ValueError(f"{value!r} is a date and time: give the date alone, as "
                             "YYYY-MM-DD (each date is a whole day in timeZone)")
        raise ValueError(f"{value!r} is not a date written YYYY-MM-DD (e.g. 2017-08-01)")
    year, month, day = (int(part) for part in match.groups())
    if year < dt.MINYEAR:
        raise ValueError(f"{value!r} is not a date: there is no year 0")
    if not 1 <= month <= 12:
        raise ValueError(f"{value!r} is not a date: there is no month {month}")
    last = calendar.monthrange(year, month)[1]
    if not 1 <= day <= last:
        raise ValueError(f"{value!r} is not a date: {calendar.month_name[month]} {year} has "
                         f"{last} days")
    return dt.date(year, month, day)


class _FormDateRange(_Params):
    """A form's submissions whose ``submitted_at`` falls in ``[from, to]``: both dates
    inclusive, written ``YYYY-MM-DD`` and read in ``timeZone`` (an IANA name, default UTC)."""

    form: str = Field(min_length=1, max_length=200)
    from_date: dt.date = Field(alias="from", description="First day, YYYY-MM-DD")
    to_date: dt.date = Field(alias="to", description="Last day (included), YYYY-MM-DD")
    time_zone: str = "UTC"

    @field_validator("from_date", "to_date", mode="before")
    @classmethod
    def _a_date(cls, value: Any) -> dt.date:
        return parse_date(value)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Asia/Kolkata')"
            ) from exc
        return value

    @model_validator(mode="after")
    def _ordered(self) -> _FormDateRange:
        if self.from_date > self.to_date:
            raise ValueError(f"'from' ({self.from_date}) is after 'to' ({self.to_date})")
        return self

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """The half-open instant range ``[start, end)`` covering both dates in the zone."""
        zone = zoneinfo.ZoneInfo(self.time_zone)
        start = dt.datetime.combine(self.from_date, dt.time(), tzinfo=zone)
        end = dt.datetime.combine(self.to_date + dt.timedelta(days=1), dt.time(), tzinfo=zone)
        return start, end


class ExportParams(_FormDateRange):
    """Export a form's submissions whose ``submitted_at`` falls in ``[from, to]``.

    Both dates are inclusive, written ``YYYY-MM-DD`` and read in ``timeZone`` (an IANA
    name, default UTC).
    """

    columns: list[str] | None = Field(default=None, min_length=1)
    # What a cell a spreadsheet would run as a formula (=SUM(...), +HYPERLINK(...)) becomes:
    # escaped with a leading ' (the default: exports are opened in spreadsheets, and their
    # text was typed by people outside the organization), or kept as it is, byte for byte,
    # for programs that read the CSV.
    formula_cells: Literal["escape", "keep"] = "escape"


class BulkSubmissionDeleteParams(_FormDateRange):
    """Delete a form's submissions whose ``submitted_at`` falls in ``[from, to]`` (as for
    an Export) and whose answers equal every ``where`` entry (field name to its exact text).

    Every deleted row leaves its before-image in the undo journal in the transaction that
    deletes it, so a rollback restores it exactly. ``maxRows`` refuses the start when more
    submissions match: a guard against a filter wider than meant.
    """

    where: dict[str, str] = Field(default_factory=dict, max_length=16,
                                  description="Field name to the exact text of its answer")
    max_rows: int | None = Field(default=None, ge=1,
                                 description="Refuse to start when more submissions match")


class BulkTeamCreateParams(_Params):
    """Create teams with a manager and members, users identified by phone.

    Column names are header names, or ``#N`` (1-based position) for files without a header
    (``hasHeader: false``). Member phones in one cell are separated by ``;``, ``|`` or ``,``.
    """

    file_id: uuid.UUID
    default_region: str = Field(
        default="IN",
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166-1 alpha-2 region for phone numbers written without +country code",
    )
    has_header: bool = True

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region known to the phone-number library")
        return value
    team_column: str = "team"
    manager_phone_column: str = "manager_phone"
    member_phones_column: str | None = "member_phones"
    max_row_errors: int = Field(default=1000, ge=0)
    delimiter: Delimiter | None = Field(default=None, description=DELIMITER_DESCRIPTION)

    @model_validator(mode="after")
    def _positions_without_header(self) -> BulkTeamCreateParams:
        if not self.has_header:
            for name in ("team_column", "manager_phone_column", "member_phones_column"):
                value = getattr(self, name)
                if value is not None and not _COLUMN_REF.match(value):
                    raise ValueError(
                        f"{to_camel(name)} must be a position such as '#2' when hasHeader is false"
                    )
        return self


Params = _Params
"""The base of a task type's parameter model: camelCase on the wire, unknown keys refused."""

ENTRY_POINT_GROUP = "longtask.task_types"
TYPE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,62}$")  # the CRD's pattern for spec.type


class PluginError(RuntimeError):
    """A task type from an entry point cannot be loaded or is not a valid :class:`TaskType`
    (the message names the distribution and the entry point)."""


@dataclass(frozen=True)
class TaskType:
    """A registered task type: its schema, how its default concurrency key is made, and
    where the runner finds its work.

    ``runner`` and ``rollback`` are ``"module:attribute"`` paths, imported by the runner
    only (the API and the operator never load a type's code): the run's
    :class:`~longtask.runner.engine.Work` class, built as ``cls(task, params, read_conn,
    stop, settings, connect=..., read_ahead=...)``, and the rollback's steps, a sequence
    of :class:`~longtask.runner.rollback.Step` undoing what the run wrote, in order.
    ``name`` is an UpperCamelCase word (the CRD's pattern for ``spec.type``).
    """

    name: str
    params_model: type[_Params]
    default_concurrency_key: Callable[[str, Mapping[str, Any]], str]
    description: str
    runner: str = ""
    rollback: str = ""
    # The default key carries a rule of the product, so no other key may be given.
    fixed_concurrency_key: bool = False
    # Whether its work can be cut into partitions that run at once (spec.parallelism > 1).
    partitions: bool = False

    def __post_init__(self) -> None:
        if not TYPE_NAME.match(self.name):
            raise ValueError(f"task type name {self.name!r} is not an UpperCamelCase word "
                             "of at most 63 letters and digits")
        for what, path in (("runner", self.runner), ("rollback", self.rollback)):
            if path and not re.match(r"^[\w.]+:[\w.]+$", path):
                raise ValueError(f"{self.name}.{what} {path!r} is not 'module:attribute'")


REGISTRY: dict[str, TaskType] = {}


def register(task_type: TaskType) -> TaskType:
    """Add a type to the registry (``ValueError`` if the name is taken)."""
    if task_type.name in REGISTRY:
        raise ValueError(f"task type {task_type.name!r} is already registered")
    REGISTRY[task_type.name] = task_type
    return task_type


def get(name: str) -> TaskType:
    """The registered type called ``name``; :class:`UnknownTaskType` otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownTaskType(f"unknown task type {name!r} (known: {known})") from None


def parse_params(type_name: str, params: Mapping[str, Any]) -> _Params:
    """Validate ``params`` against the type's schema.

    Raises :class:`UnknownTaskType` or :class:`ParamsError` (with field paths).
    """
    task_type = get(type_name)
    try:
        return task_type.params_model.model_validate(dict(params))
    except ValidationError as exc:
        errors = [(".".join(str(p) for p in err["loc"]), error_message(err))
                  for err in exc.errors()]
        raise ParamsError(type_name, errors) from None


def error_message(err: Any) -> str:
    """A pydantic validation error's message (one item of ``errors()``); ours without
    pydantic's "Value error, " in front."""
    cause = (err.get("ctx") or {}).get("error")
    if err.get("type") == "value_error" and isinstance(cause, ValueError):
        return str(cause)
    return str(err["msg"])


def default_concurrency_key(type_name: str, organization: str, params: Mapping[str, Any]) -> str:
    """``spec.concurrencyKey`` when the client gives none, e.g. ``BaselineUpload/acme``."""
    return get(type_name).default_concurrency_key(organization, params)


def parallelism_problem(type_name: str, parallelism: int) -> str | None:
    """Why ``parallelism`` may not be a ``type_name`` task's ``spec.parallelism``; None when
    it may. No registered type partitions its work yet: each runs as one runner, so a
    parallelism above 1 would do nothing and is refused rather than ignored. The CRD holds
    the same rule (crds/longtask.yaml). ``UnknownTaskType`` for an unknown type."""
    if parallelism <= 1 or get(type_name).partitions:
        return None
    return (f"parallelism {parallelism} is refused: {type_name} cannot partition its work "
            "yet (no task type does; each runs as one runner), so leave parallelism out or "
            "give 1")


def concurrency_key_problem(type_name: str, organization: str, key: str) -> str | None:
    """Why ``key`` may not be the ``spec.concurrencyKey`` of a ``type_name`` task of
    ``organization``; None when it may.

    Keys are compared across a namespace that many organizations share, so a key names its
    organization as its second ``/``-separated part, like every type's default
    (``<anything>/<organization>[/<more>]``): no organization's key can equal another's. A
    type whose default carries a rule (one baseline upload per organization at a time)
    takes no other key. The CRD has the same two rules (crds/longtask.yaml), for clients
    that do not come through the API. ``UnknownTaskType`` for an unknown type.
    """
    task_type = get(type_name)
    if task_type.fixed_concurrency_key:
        fixed = task_type.default_concurrency_key(organization, {})
        if key != fixed:
            return f"a {type_name} task's concurrency key is {fixed!r}, not {key!r}"
        return None
    parts = key.split("/")
    if len(parts) < 2 or parts[1] != organization:
        return (f"concurrency key {key!r} must name organization {organization!r} as its "
                f"second part, as in '{type_name}/{organization}/nightly'")
    return None


BASELINE_UPLOAD = register(
    TaskType(
        name="BaselineUpload",
        runner="longtask.runner.tasks.baseline:BaselineUpload",
        rollback="longtask.runner.tasks:BASELINE_UPLOAD_ROLLBACK",
        params_model=BaselineUploadParams,
        # One baseline upload per organization at a time (README.md, case 1).
        default_concurrency_key=lambda org, _p: f"BaselineUpload/{org}",
        description="Load a CSV file into a form's baseline records",
        fixed_concurrency_key=True,
    )
)
EXPORT = register(
    TaskType(
        name="Export",
        runner="longtask.runner.tasks.export:Export",
        rollback="longtask.runner.tasks:EXPORT_ROLLBACK",
        params_model=ExportParams,
        default_concurrency_key=lambda org, p: f"Export/{org}/{p.get('form', '')}",
        description="Export a form's submissions in a date range to CSV",
    )
)
BULK_TEAM_CREATE = register(
    TaskType(
        name="BulkTeamCreate",
        runner="longtask.runner.tasks.teams:BulkTeamCreate",
        rollback="longtask.runner.tasks:BULK_TEAM_CREATE_ROLLBACK",
        params_model=BulkTeamCreateParams,
        default_concurrency_key=lambda org, _p: f"BulkTeamCreate/{org}",
        description="Create teams, their managers and members from a CSV file",
    )
)

BULK_SUBMISSION_DELETE = register(
    TaskType(
        name="BulkSubmissionDelete",
        runner="longtask.runner.tasks.deletes:BulkSubmissionDelete",
        rollback="longtask.runner.tasks:BULK_SUBMISSION_DELETE_ROLLBACK",
        params_model=BulkSubmissionDeleteParams,
        default_concurrency_key=lambda org, p: f"BulkSubmissionDelete/{org}/{p.get('form', '')}",
        description="Delete a form's submissions in a date range, every one restorable",
    )
)



def load_plugins(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None
                 ) -> list[TaskType]:
    """Register the task types of the installed distributions' ``longtask.task_types``
    entry points (each a :class:`TaskType`); the types registered.

    Raises :class:`PluginError` naming the distribution and the entry point for one that
    does not import, is not a TaskType, or takes a name already registered: a process
    with a broken plug-in does not start, rather than refuse its tasks one by one.
    """
    found = (importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
             if entry_points is None else entry_points)
    added = []
    for entry in found:
        where = f"entry point {entry.name!r} = {entry.value!r}"
        if entry.dist is not None:
            where += f" of {entry.dist.name} {entry.dist.version}"
        try:
            task_type = entry.load()
        except Exception as exc:  # whatever a plug-in raises on import
            raise PluginError(f"{where} does not load: {type(exc).__name__}: {exc}") from exc
        if not isinstance(task_type, TaskType):
            raise PluginError(f"{where} is a {type(task_type).__name__}, not a "
                              "longtask.tasktypes.TaskType")
        if task_type.name in REGISTRY and REGISTRY[task_type.name] is task_type:
            continue
        try:
            added.append(register(task_type))
        except ValueError as exc:
            raise PluginError(f"{where}: {exc}") from None
    return added


load_plugins()

# The registered types' names, built-in and plug-ins alike: the API's models validate
# spec.type against them and its OpenAPI document lists them. (A plain str to the type
# checker, which cannot see what is installed.)
if TYPE_CHECKING:
    TaskTypeName = str
else:
    TaskTypeName = Literal[tuple(REGISTRY)]
