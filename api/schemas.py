"""Request and response bodies: Create, Update and Public shapes, camelCase on the wire.

The LongTask's status parts (conditions, progress, rollback, last action) are the
operator's own models (:mod:`longtask.model`), so the API shows exactly what the
CRD holds.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from longtask import tasktypes
from longtask.constants import ANNOTATION_REASON, ANNOTATION_REQUESTED_BY, GROUP
from longtask.model import Condition, LastAction, Progress, RollbackProgress
from longtask.phases import DesiredState, OnMaxPause, OnTerminate, Phase
from longtask.textencoding import EncodingSource

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# The label the API keeps a client's chosen task name under (task_common.LABEL_REQUESTED_NAME).
REQUESTED_NAME_LABEL = f"{GROUP}/requested-name"
# The dry run's warnings when the task was created (JSON: a list of DryRunWarning), put
# on the LongTask by POST /v1/tasks and shown as the task's ``preflight``.
PREFLIGHT_ANNOTATION = f"{GROUP}/preflight"
PREFLIGHT_ANNOTATION_MAX = 16_000  # characters; warnings beyond are left out
CONCURRENCY_KEY = r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$"


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class _Request(_Wire):
    """A request body: unknown keys are refused (a typo is an error, not a no-op)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


MAX_BOUND_SECONDS = 31_536_000  # a year: the CRD's maximum of the bounds


def rfc3339(moment: dt.datetime) -> str:
    """``moment`` as the spec stores it: UTC, whole seconds, ``Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _future(moment: dt.datetime | None) -> dt.datetime | None:
    """A ``resumeAt`` must name its time zone and lie ahead."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("resumeAt needs a time zone (RFC 3339), e.g. 2026-12-05T02:00:00Z")
    if moment <= dt.datetime.now(dt.UTC):
        raise ValueError("resumeAt is in the past; give a time ahead, or resume now")
    return moment


class _Bounds(_Request):
    """The bounds a pause or a task may carry (``spec`` fields of the same names)."""

    resume_at: dt.datetime | None = Field(
        default=None, description="With a pause: when the operator resumes the task by "
                                  "itself (RFC 3339 with a time zone, ahead of now)")
    max_pause_seconds: int | None = Field(
        default=None, ge=1, le=MAX_BOUND_SECONDS,
        description="The longest a pause may last; then onMaxPause")
    on_max_pause: OnMaxPause | None = Field(
        default=None, description="Resume (default) or Terminate a pause past maxPauseSeconds")

    @field_validator("resume_at")
    @classmethod
    def _resume_at_ahead(cls, moment: dt.datetime | None) -> dt.datetime | None:
        return _future(moment)

    def bounds(self) -> dict[str, Any]:
        """The bound fields this request sets, as ``spec`` holds them (``null`` removes)."""
        given = self.model_fields_set
        out: dict[str, Any] = {}
        if "resume_at" in given:
            out["resumeAt"] = rfc3339(self.resume_at) if self.resume_at else None
        if "max_pause_seconds" in given:
            out["maxPauseSeconds"] = self.max_pause_seconds
        if "on_max_pause" in given:
            out["onMaxPause"] = str(self.on_max_pause) if self.on_max_pause else None
        if "max_running_seconds" in given:
            out["maxRunningSeconds"] = getattr(self, "max_running_seconds", None)
        return out


# ------------------------------------------------------------------------------ tasks


class TaskCreate(_Bounds):
    """``POST /v1/tasks`` and ``POST /v1/tasks/validate``: what to run, for whom."""

    type: tasktypes.TaskTypeName
    organization: str = Field(min_length=1, max_length=100, pattern=DNS_LABEL)
    params: dict[str, Any] = Field(description="The type's parameters, e.g. {form, fileId}")
    name: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=DNS_LABEL,
        description="Your name for the task, unique in its organization: the LongTask is "
                    "named '<name>-<12 hex digits>' (the task's 'name' in answers and URLs), "
                    "so organizations never meet on a name; made up from the type and "
                    "organization when absent",
    )
    state: Literal[DesiredState.RUNNING, DesiredState.PAUSED] = Field(
        default=DesiredState.RUNNING, description="Paused creates the task without starting it")
    on_terminate: OnTerminate = OnTerminate.ROLLBACK
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=253,
                                        pattern=CONCURRENCY_KEY)
    parallelism: int | None = Field(default=None, ge=1, le=32)
    rate_limit: int | None = Field(default=None, ge=1, le=1_000_000,
                                   description="Upper bound on rows per second")
    reason: str | None = Field(default=None, max_length=1024,
                               description="Why the task is started (recorded on the task)")
    max_running_seconds: int | None = Field(
        default=None, ge=1, le=MAX_BOUND_SECONDS,
        description="The longest the task may run, paused time not counted; then it is "
                    "terminated (its onTerminate)")

    @model_validator(mode="after")
    def _resume_at_with_a_pause(self) -> TaskCreate:
        if self.resume_at is not None and self.state is not DesiredState.PAUSED:
            raise ValueError("resumeAt ends a pause: create the task with state Paused")
        return self

    @field_validator("parallelism")
    @classmethod
    def _parallelism_the_type_can_use(cls, parallelism: int | None,
                                      info: ValidationInfo) -> int | None:
        """A parallelism the type cannot use is refused
        (:func:`longtask.tasktypes.parallelism_problem`)."""
        type_name = info.data.get("type")
        if parallelism is not None and type_name:
            problem = tasktypes.parallelism_problem(type_name, parallelism)
            if problem:
                raise ValueError(problem)
        return parallelism

    @field_validator("concurrency_key")
    @classmethod
    def _key_names_the_organization(cls, key: str | None, info: ValidationInfo) -> str | None:
        """A key of another organization, or another key for a type whose key is fixed, is
        refused (:func:`longtask.tasktypes.concurrency_key_problem`)."""
        type_name, organization = info.data.get("type"), info.data.get("organization")
        if key is not None and type_name and organization:
            problem = tasktypes.concurrency_key_problem(type_name, organization, key)
            if problem:
                raise ValueError(problem)
        return key

    def spec(self) -> dict[str, Any]:
        """The LongTask ``spec`` this request asks for (unset optional fields left out)."""
        spec: dict[str, Any] = {
            "type": self.type, "organization": self.organization, "params": self.params,
            "state": str(self.state), "onTerminate": str(self.on_terminate),
        }
        for key, value in (("concurrencyKey", self.concurrency_key),
                           ("parallelism", self.parallelism), ("rateLimit", self.rate_limit)):
            if value is not None:
                spec[key] = value
        spec.update({k: v for k, v in self.bounds().items() if v is not None})
        return spec


class TaskUpdate(_Bounds):
    """``PATCH /v1/tasks/{name}`` (``application/merge-patch+json``, RFC 7396).

    The spec fields a client may edit, as ``kubectl edit`` would. A field left out is left
    alone; ``null`` removes it (only ``rateLimit`` may be absent from a spec). ``rateLimit``
    may change while the task runs (the live throttle); ``parallelism`` is fixed at
    creation by the CRD, so changing it is refused with the server's reason.
    """

    state: DesiredState | None = None
    on_terminate: OnTerminate | None = None
    rate_limit: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Rows per second, changed while the task runs (null: unlimited); the "
                    "runner keeps to it from its next chunk")
    max_running_seconds: int | None = Field(
        default=None, ge=1, le=MAX_BOUND_SECONDS,
        description="The longest the task may run, paused time not counted (null: none)")
    parallelism: int | None = Field(default=None, ge=1, le=32)


class ControlRequest(_Request):
    """Body of ``resume`` (optional); ``pause`` takes a :class:`PauseRequest`."""

    reason: str | None = Field(default=None, max_length=1024,
                               description="Why; recorded on the task and in its history")


class PauseRequest(_Bounds, ControlRequest):
    """Body of ``pause`` (optional): ``reason``, and bounds that end the pause by itself:
    ``resumeAt``, ``maxPauseSeconds`` and ``onMaxPause`` (kept on the task)."""


class TerminateRequest(ControlRequest):
    """Body of ``terminate`` (optional): ``rollback: false`` keeps the rows written."""

    rollback: bool | None = Field(
        default=None, description="Remove what the task wrote (default: the task's onTerminate)")


class TaskPublic(_Wire):
    """A task as it now stands: its spec, the operator's status and the last request."""

    name: str = Field(description="The LongTask's name, as the task's URLs take it")
    requested_name: str | None = Field(
        default=None, description="The name the creating request chose, if it chose one")
    namespace: str
    uid: str
    type: str
    organization: str
    params: dict[str, Any]
    state: DesiredState
    on_terminate: OnTerminate
    concurrency_key: str | None = Field(description="spec.concurrencyKey or the type's default")
    parallelism: int
    rate_limit: int | None
    resume_at: dt.datetime | None = Field(default=None,
                                          description="When a pause ends by itself, if asked")
    max_pause_seconds: int | None = None
    on_max_pause: OnMaxPause = OnMaxPause.RESUME
    max_running_seconds: int | None = None
    pause_ends_at: dt.datetime | None = Field(
        default=None, description="When the pause in force ends by itself (resumeAt or "
                                  "maxPauseSeconds, the earlier), as the operator says")
    phase: Phase = Field(description="Pending until the operator has seen the task")
    final: bool = Field(description="True once the phase can no longer change")
    message: str | None
    conditions: list[Condition]
    progress: Progress | None
    rollback: RollbackProgress | None
    job_name: str | None
    rollback_job_name: str | None
    created_at: dt.datetime
    queued_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    phase_since: dt.datetime | None
    running_seconds: int
    paused_seconds: int
    last_action: LastAction | None
    requested_by: str | None = Field(description="Who made the last control request")
    reason: str | None = Field(description="Why, as that request said")
    generation: int
    observed_generation: int | None
    deleting: bool = Field(
        default=False,
        description="True once the task was deleted and the operator's finalizer still keeps "
                    "it (stopping its Jobs); phase is then the last one the operator saw")
    deletion_requested_at: dt.datetime | None = Field(
        default=None, description="When it was deleted (metadata.deletionTimestamp)")
    preflight: list[DryRunWarning] = Field(
        default_factory=list, description="The dry run's warnings when the task was created "
                                          "(annotation collect.atlan.com/preflight)")

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TaskPublic:
        """Build from a LongTask object as the Kubernetes API returns it."""
        meta = body["metadata"]
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        annotations = meta.get("annotations") or {}
        phase = Phase(status.get("phase") or Phase.PENDING)
        key = spec.get("concurrencyKey") or status.get("concurrencyKey")
        if not key:
            try:
                key = tasktypes.default_concurrency_key(spec["type"], spec["organization"],
                                                        spec.get("params") or {})
            except tasktypes.UnknownTaskType:
                key = None
        return cls(
            name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
            requested_name=(meta.get("labels") or {}).get(REQUESTED_NAME_LABEL),
            type=spec["type"], organization=spec["organization"],
            params=spec.get("params") or {},
            state=DesiredState(spec.get("state") or DesiredState.RUNNING),
            on_terminate=OnTerminate(spec.get("onTerminate") or OnTerminate.ROLLBACK),
            concurrency_key=key, parallelism=int(spec.get("parallelism") or 1),
            rate_limit=spec.get("rateLimit"), resume_at=spec.get("resumeAt"),
            max_pause_seconds=spec.get("maxPauseSeconds"),
            on_max_pause=OnMaxPause(spec.get("onMaxPause") or OnMaxPause.RESUME),
            max_running_seconds=spec.get("maxRunningSeconds"),
            pause_ends_at=status.get("pauseEndsAt"),
            phase=phase, final=phase.is_final,
            message=status.get("message"),
            conditions=_conditions(status.get("conditions")),
            progress=Progress.model_validate(status["progress"]) if status.get("progress")
            else None,
            rollback=RollbackProgress.model_validate(status["rollback"])
            if status.get("rollback") else None,
            job_name=status.get("jobName"), rollback_job_name=status.get("rollbackJobName"),
            created_at=meta["creationTimestamp"], queued_at=status.get("queuedAt"),
            started_at=status.get("startedAt"), finished_at=status.get("finishedAt"),
            phase_since=status.get("phaseSince"),
            running_seconds=int(status.get("runningSeconds") or 0),
            paused_seconds=int(status.get("pausedSeconds") or 0),
            last_action=LastAction.model_validate(status["lastAction"])
            if status.get("lastAction") else None,
            requested_by=annotations.get(ANNOTATION_REQUESTED_BY),
            reason=annotations.get(ANNOTATION_REASON),
            generation=int(meta.get("generation") or 1),
            observed_generation=status.get("observedGeneration"),
            deleting=bool(meta.get("deletionTimestamp")),
            deletion_requested_at=meta.get("deletionTimestamp"),
            preflight=_preflight(annotations.get(PREFLIGHT_ANNOTATION)),
        )


def _preflight(raw: str | None) -> list[DryRunWarning]:
    """The warnings of a preflight annotation; none when it is missing or unreadable
    (someone edited it by hand)."""
    if not raw:
        return []
    try:
        return [DryRunWarning.model_validate(w) for w in json.loads(raw)]
    except (ValueError, TypeError, ValidationError):
        return []


def preflight_annotation(warnings: list[DryRunWarning]) -> str:
    """The annotation holding ``warnings`` (JSON), cut to whole warnings within
    :data:`PREFLIGHT_ANNOTATION_MAX` characters."""
    kept: list[str] = []
    size = 2
    for warning in warnings:
        text = warning.model_dump_json(by_alias=True, exclude_none=True)
        if size + len(text) + 1 > PREFLIGHT_ANNOTATION_MAX:
            break
        kept.append(text)
        size += len(text) + 1
    return "[" + ",".join(kept) + "]"


def _conditions(raw: Any) -> list[Condition]:
    """The conditions the API knows; one of a kind added by a newer operator is left out."""
    known = []
    for item in raw or []:
        try:
            known.append(Condition.model_validate(item))
        except ValidationError:
            continue
    return known


class TaskList(_Wire):
    """One page of tasks, newest first; ``next`` is the cursor of the following page."""

    items: list[TaskPublic]
    next: str | None = Field(description="Pass as ?cursor= for the next page; null at the end")


# ------------------------------------------------------------------------------ files


class FilePublic(_Wire):
    """A stored file: sizes in bytes, SHA-256 of the stored bytes, the CSV header, and how
    its encoding was found, with lines decoded to check it by."""

    id: uuid.UUID
    organization: str
    filename: str
    size_bytes: int
    sha256: str
    encoding: str = Field(description="Encoding of the stored bytes (UTF-16/32 become utf-8)")
    encoding_label: str = Field(description="What the encoding is called, e.g. "
                                            "'Windows-1252 (Western European)'")
    encoding_source: EncodingSource = Field(
        description="utf-8: every byte checked; byte-order-mark / utf-16-pattern: UTF-16 or "
                    "UTF-32, transcoded; detected: told from the text; named: given at upload")
    encoding_confidence: float | None = Field(
        description="1 when checked; the detection's confidence (0 to 1; uploads below 0.9 "
                    "are refused); null when named at upload")
    decoded_samples: list[str] = Field(
        description="Up to 5 lines from the start holding non-ASCII characters, decoded as "
                    "stored and cut to 80 characters: check that they read right")
    source_encoding: str = Field(description="The uploaded bytes' encoding, and how it was "
                                             "found, e.g. 'cp1252 (detected, confidence 0.97)'")
    header: list[str] | None = Field(description="The first record's fields, when readable")
    row_count_estimate: int | None = Field(
        description="Data records after the header: exact when rowCountExact, else scaled "
                    "from the first MiB")
    row_count_exact: bool
    warnings: list[str]
    expires_at: dt.datetime | None = Field(
        default=None,
        description="When the retention removes the file: its upload plus the unused-file "
                    "retention until a task uses it; null while a task that uses it may "
                    "still run, resume or roll back; the last such task's end plus the "
                    "retention after")


# ------------------------------------------------------------------------- row errors


class RowErrorPublic(_Wire):
    """A row the task refused: physical ``line`` (1-based), ``column``, ``reason``, value."""

    line: int
    column: str | None
    reason: str
    value: str | None


class RowErrorList(_Wire):
    """A page of row errors by line. ``total`` counts every bad row, ``stored`` those listed."""

    total: int
    stored: int
    items: list[RowErrorPublic]
    next: str | None


class ConflictPublic(_Wire):
    """A row the rollback left in place: ``table`` (schema ``collect``), its ``id``, and
    ``reason`` (changed by someone else, referenced by rows that stay, or kept with a row
    that stays)."""

    table: str
    id: int
    reason: str


class ConflictList(_Wire):
    """A page of the rows a rollback left, by table then id; ``total`` counts them all."""

    total: int
    items: list[ConflictPublic]
    next: str | None


# ---------------------------------------------------------------------------- history


class HistoryEntry(_Wire):
    """One Event of the task: a control request (source ``longtask-api``) or a transition."""

    at: dt.datetime | None
    source: str | None = Field(description="longtask-api for requests, the operator otherwise")
    type: str = Field(description="Normal or Warning")
    reason: str
    message: str
    count: int


class History(_Wire):
    """A task's control actions and transitions, oldest first.

    Events live as long as the cluster keeps them (one hour by default); ``lastAction`` and
    the annotations keep the latest request for the task's whole life.
    """

    name: str
    created_at: dt.datetime
    requested_by: str | None
    reason: str | None
    last_action: LastAction | None
    entries: list[HistoryEntry]


# ---------------------------------------------------------------------------- dry run


class ColumnReport(_Wire):
    """One column of the file: where it goes, what it holds, how its sample values parse."""

    position: int = Field(description="1-based column number")
    header: str | None
    target: str | None = Field(description="Form field or team role it maps to; null if none")
    type: str | None = Field(description="The target's value type (text, integer, phone, ...)")
    samples: list[str] = Field(description="Up to 5 distinct non-blank values, in file order, "
                                           "cut to 60 characters")
    values: int = Field(description="Non-blank values in the rows read")
    invalid: int = Field(description="Values that do not parse as the target's type")


class DryRunWarning(_Wire):
    """Something that will not fail the task but is probably wrong, and why."""

    code: str = Field(description="columns-swapped, invalid-values, no-rows-written, "
                                  "encoding-detected, count-timed-out, empty-range, "
                                  "deletes-rows, unusually-large, column-shifted, "
                                  "values-of-another-field, preflight-timed-out, ...")
    detail: str
    columns: list[str] = Field(default_factory=list)
    evidence: dict[str, Any] | None = Field(
        default=None, description="The figures a preflight warning rests on, compared with "
                                  "the organization's own stored data (api/README.md, "
                                  "\"Preflight\")")


class PreflightReport(_Wire):
    """What the preflight compared the request with: the organization's own stored data."""

    compared: bool = Field(description="False when there was nothing to compare with (a "
                                       "first upload, a first export) or no time left")
    detail: str = Field(description="What was compared, or why nothing was")
    lookups: int = Field(default=0, description="Index lookups made")
    seconds: float = Field(default=0.0, description="Wall time of the preflight")


class SampleReport(_Wire):
    """What the dry run read of the file, and which bound ended its reading."""

    rows: int = Field(description="Data rows read and parsed")
    bytes: int = Field(description="Bytes of the file after the header those rows took")
    seconds: float = Field(description="Wall time of the dry run when reading stopped")
    stopped_by: Literal["end", "rows", "bytes", "seconds"] = Field(
        description="end: the whole file was read; rows, bytes, seconds: the bound "
                    "(?rows, LONGTASK_API_VALIDATE_MAX_BYTES, "
                    "LONGTASK_API_VALIDATE_BUDGET_SECONDS) that stopped it")


class ValidationReport(_Wire):
    """What ``POST /v1/tasks`` would do with this request. Nothing is created.

    ``valid`` is false when the task would fail before writing anything, or write nothing
    (every data row of the file a row error); ``errors`` say why, with field paths, and
    ``POST /v1/tasks`` refuses the request with the same ones. ``rowErrors`` are the rows
    among the first ``rowsRead`` that the run would refuse.
    """

    valid: bool
    type: str
    organization: str
    concurrency_key: str | None
    errors: list[dict[str, Any]]
    file: FilePublic | None = None
    rows_total: int | None = Field(default=None, description="Rows the run would process; "
                                   "null when the count could not be made in the budget")
    rows_total_estimated: bool = Field(
        default=False, description="True when rowsTotal is scaled from the first countBytes "
                                   "of the file (LONGTASK_API_VALIDATE_COUNT_BYTES) or from "
                                   "the bytes counted before the time budget ran out")
    count_bytes: int | None = Field(default=None,
                                    description="Bytes of the file the row count read")
    rows_read: int = 0
    sampled: SampleReport | None = Field(default=None,
                                         description="What was read, and what stopped it")
    columns: list[ColumnReport] = Field(default_factory=list)
    row_errors: list[RowErrorPublic] = Field(
        default_factory=list, description="The first 500 bad rows among those read, values "
                                          "cut to 200 characters")
    row_errors_total: int = Field(default=0, description="Bad rows among those read")
    warnings: list[DryRunWarning] = Field(default_factory=list)
    preflight: PreflightReport | None = Field(
        default=None, description="The comparison with the organization's stored data")
