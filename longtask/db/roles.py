"""Database roles: one per component, each granted only what its code runs.

The **migration owner** (whoever runs ``longtask-migrate``) owns the schemas ``collect`` and
``longtask`` and every table in them; it alone runs DDL. The API, the operator and the
runner each log in with a role of their own, a member of one NOLOGIN group role that holds
the component's privileges (:data:`GRANTS`):

- ``longtask_runner``: reads the Collect reference tables, writes the rows its task types
  insert, update and delete (each table its rollback undoes; submissions only since
  migration 0008, for BulkSubmissionDelete), and the task record's run and rollback
  columns; never ``hold``, never DDL (a temporary table is all it creates).
- ``longtask_api``: reads the Collect reference tables (a submission's form and time only,
  for an export's count), writes the file store and the task record's ``hold``, reads row
  errors, rollback conflicts and export output. For the dry run's preflight (migration
  0006) it reads stored values of its caller's organization: baseline records' data,
  teams, their managers and users' phones and names (never a row's task id, never a
  submission's answers); every preflight query is filtered by that organization.
- ``longtask_operator``: reads the task record and writes its ``hold`` and (migration
  0005) its ``rate_limit``, the live throttle; the retention (migration 0004): marks
  files and export outputs removed, deletes their blocks and parts, writes the removals'
  audit.
  The webhooks (migration 0007): writes the notifications' outbox and their attempts.

All three make and lock their organization's usage row for the storage quota; its bytes
are written only by migration 0004's SECURITY DEFINER trigger functions.

API tokens are not in the database (a Secret the API reads, :mod:`longtask.api.auth`).

:data:`GRANTS` is the one table of who may do what: migration 0003 applies its rows, the
chart README and ``docs/architecture.md`` print it (``tests/db/test_roles.py`` checks they
match), and a migration that adds a table adds rows with its own revision in ``since`` and
calls :func:`grant_revision` for that revision (:func:`revoke_revision` in its
downgrade). A table
in either schema that no row names is reachable by no component; the tests say so.
No ``ALTER DEFAULT PRIVILEGES``: it would grant every future table to a role whether its
code uses it or not; here a new table is reachable only through rows someone wrote for
it, which ``tests/db/test_roles.py`` compares with the server's privileges and the
components' suites prove sufficient.

Privileges follow PostgreSQL's rules (documentation, "Privileges" and "GRANT"): an
``INSERT ... ON CONFLICT DO UPDATE`` needs UPDATE on the columns it sets; a ``SELECT ... FOR
UPDATE`` needs UPDATE on at least one column; ``COPY ... FROM`` needs INSERT; identity
columns need no privilege on their sequence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Component = Literal["api", "operator", "runner"]
COMPONENTS: tuple[Component, ...] = ("api", "operator", "runner")

_IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"  # an unquoted PostgreSQL name, 63 bytes at most
_PRIVILEGE = re.compile(r"^(SELECT|INSERT|UPDATE|DELETE|USAGE|CONNECT|TEMPORARY|EXECUTE)"
                        r"( \([a-z_][a-z0-9_]*(, [a-z_][a-z0-9_]*)*\))?$")


class DatabaseRoles(BaseSettings):
    """Names of the three NOLOGIN group roles, ``LONGTASK_DATABASE_ROLE_<COMPONENT>``.

    Read by ``longtask-migrate``; a server holding several LongTask databases gives each
    its own names, since roles are the server's and not one database's.
    """

    model_config = SettingsConfigDict(env_prefix="LONGTASK_DATABASE_ROLE_", extra="ignore")

    api: str = Field(default="longtask_api", pattern=_IDENTIFIER)
    operator: str = Field(default="longtask_operator", pattern=_IDENTIFIER)
    runner: str = Field(default="longtask_runner", pattern=_IDENTIFIER)

    def of(self, component: Component) -> str:
        """The group role of ``component``."""
        name: str = getattr(self, component)
        return name


@dataclass(frozen=True)
class Grant:
    """One GRANT: ``privileges`` (``"SELECT"``, ``"UPDATE (hold, updated_at)"``) on
    ``objects`` (``"TABLE longtask.tasks"``, ``"SCHEMA collect"``, ``"DATABASE"`` for the
    current database) to ``component``'s group role, made by migration ``since``; ``why``
    names the code that needs it."""

    component: Component
    privileges: tuple[str, ...]
    objects: tuple[str, ...]
    since: str
    why: str

    def __post_init__(self) -> None:
        for privilege in self.privileges:
            if not _PRIVILEGE.match(privilege):
                raise ValueError(f"grant of {self.component}: {privilege!r} is not a privilege")

    @property
    def tables(self) -> tuple[str, ...]:
        """The qualified tables among ``objects``."""
        return tuple(o.removeprefix("TABLE ") for o in self.objects if o.startswith("TABLE "))


_HOLD_INSERT = "INSERT (uid, name, namespace, type, organization, params, hold)"
_HOLD_UPDATE = "UPDATE (hold, updated_at)"
# Every column of longtask.tasks the runner's statements set (longtask/taskrecord.py:
# register's ON CONFLICT, acquire, checkpoint, set_total, end, fail_early): all but the
# task's identity, its creation time and the hold.
_RUNNER_TASK_COLUMNS = (
    "name, namespace, epoch, lease_holder, rate_limit, run_status, cursor, total, done, "
    "row_errors, chunks, rate_per_second, eta_seconds, message, stop_reason, "
    "stop_requested_at, started_at, heartbeat_at, finished_at, rollback_status, "
    "rollback_cursor, rollback_total, rollback_done, rollback_conflicts, rollback_message, "
    "rollback_started_at, rollback_finished_at, updated_at"
)
# SELECT ... FOR UPDATE needs an UPDATE privilege on some column: the one no statement sets.
_USAGE_LOCK = "UPDATE (updated_at)"
# Migration 0008's function: the submissions a BulkSubmissionDelete's filter matches.
COUNT_MATCHING = ("FUNCTION longtask.count_matching_submissions(bigint, timestamptz, "
                  "timestamptz, jsonb)")
_REFERENCE = ("TABLE collect.organizations", "TABLE collect.forms", "TABLE collect.form_fields")

GRANTS: tuple[Grant, ...] = (
    # ---------------------------------------------------------------------------- runner
    Grant("runner", ("CONNECT", "TEMPORARY"), ("DATABASE",), "0003",
          "connects; a BaselineUpload stages each chunk in a temporary table"),
    Grant("runner", ("USAGE",), ("SCHEMA collect", "SCHEMA longtask"), "0003",
          "reads and writes tables of both schemas"),
    Grant("runner", ("SELECT",), (*_REFERENCE, "TABLE collect.submissions"), "0003",
          "organization and form lookups; an Export reads submissions"),
    Grant("runner", ("SELECT", "INSERT (organization_id, form_id, external_id, data, task_uid)",
                     "UPDATE (data, task_uid, updated_at)", "DELETE"),
          ("TABLE collect.baseline_records",), "0003",
          "BaselineUpload inserts and upserts rows; its rollback restores and deletes them"),
    Grant("runner", ("SELECT", "INSERT (organization_id, name, task_uid)",
                     "UPDATE (updated_at)", "DELETE"), ("TABLE collect.teams",), "0003",
          "BulkTeamCreate inserts teams; its rollback locks (FOR UPDATE) and deletes them"),
    Grant("runner", ("SELECT", "INSERT (organization_id, phone_e164, task_uid)",
                     "UPDATE (updated_at)", "DELETE"), ("TABLE collect.field_users",), "0003",
          "BulkTeamCreate inserts missing users; its rollback locks and deletes them"),
    Grant("runner", ("SELECT", "INSERT (team_id, user_id, role, task_uid)",
                     "UPDATE (updated_at)", "DELETE"), ("TABLE collect.team_memberships",),
          "0003", "BulkTeamCreate inserts memberships; its rollback locks and deletes them"),
    Grant("runner", ("SELECT", "INSERT (uid, name, namespace, type, organization, params, "
                     "rate_limit)", f"UPDATE ({_RUNNER_TASK_COLUMNS})"),
          ("TABLE longtask.tasks",), "0003",
          "the task record: register, lease, checkpoint, end (taskrecord.py); reads the hold"),
    Grant("runner", ("SELECT", "INSERT"), ("TABLE longtask.chunks", "TABLE longtask.undo_journal"),
          "0003", "the chunk log; before-images of updated rows, replayed by a rollback"),
    Grant("runner", ("INSERT",), ("TABLE longtask.row_errors", "TABLE longtask.rollback_conflicts"),
          "0003", "row errors of a run; rows a rollback left"),
    Grant("runner", ("SELECT", "INSERT", "DELETE"), ("TABLE longtask.export_parts",), "0003",
          "an Export's output parts; its rollback removes them"),
    Grant("runner", ("SELECT",), ("TABLE longtask.files", "TABLE longtask.file_blocks"), "0003",
          "reads its input file from the file store"),
    # ------------------------------------------------------------------------------- api
    Grant("api", ("CONNECT",), ("DATABASE",), "0003", "connects"),
    Grant("api", ("USAGE",), ("SCHEMA collect", "SCHEMA longtask"), "0003",
          "reads tables of both schemas"),
    Grant("api", ("SELECT",), _REFERENCE, "0003",
          "organization and form checks, the dry run's header mapping"),
    Grant("api", ("SELECT (form_id, submitted_at)",), ("TABLE collect.submissions",), "0003",
          "the dry run counts an Export's submissions, never reads their answers"),
    Grant("api", ("SELECT", "INSERT (id, organization, filename, content_type, block_size, "
                  "created_by)", "UPDATE (size_bytes, sha256, encoding, source_encoding, "
                  "complete)", "DELETE"), ("TABLE longtask.files",), "0003",
          "stores uploads and describes them; deletes an upload cut off or refused, and "
          "incomplete ones a killed process left (filestore.py, store_in_blocks)"),
    Grant("api", ("SELECT", "INSERT"), ("TABLE longtask.file_blocks",), "0003",
          "an upload's blocks; the head of a file for its description"),
    Grant("api", ("SELECT", _HOLD_INSERT, _HOLD_UPDATE), ("TABLE longtask.tasks",), "0003",
          "holds and releases a run on a control request; reads the row-error count"),
    Grant("api", ("SELECT",), ("TABLE longtask.row_errors", "TABLE longtask.rollback_conflicts",
                               "TABLE longtask.export_parts"), "0003",
          "GET .../errors, .../conflicts and .../output"),
    # -------------------------------------------------------------------------- operator
    Grant("operator", ("CONNECT",), ("DATABASE",), "0003", "connects"),
    Grant("operator", ("USAGE",), ("SCHEMA longtask",), "0003", "reads the task record"),
    Grant("operator", ("SELECT", _HOLD_INSERT, _HOLD_UPDATE), ("TABLE longtask.tasks",), "0003",
          "reads the runner's record (progress, outcome); holds and releases the run"),
    # ------------------------------------------------- 0004: storage quota and retention
    # The usage itself is written only by the triggers' SECURITY DEFINER functions
    # (migration 0004): no role may set an organization's used bytes.
    Grant("api", ("SELECT", "INSERT (organization)", _USAGE_LOCK),
          ("TABLE longtask.storage_usage",), "0004",
          "an upload's quota: makes and locks its organization's usage row (storage.check)"),
    Grant("api", ("UPDATE (expires_at, first_used_at, last_claimed_at)",),
          ("TABLE longtask.files",), "0004",
          "an upload's expiry; a create claims its file (storage.CLAIM_FILE)"),
    Grant("api", ("SELECT",), ("TABLE longtask.storage_removals",), "0004",
          "the 410 of a removed file or output says when and why"),
    Grant("runner", ("SELECT", "INSERT (organization)", _USAGE_LOCK),
          ("TABLE longtask.storage_usage",), "0004",
          "an export part's quota: makes and locks its organization's usage row"),
    Grant("operator", ("SELECT", "UPDATE (first_used_at, expires_at, removed_at)"),
          ("TABLE longtask.files",), "0004",
          "the retention: the files in use, their expiry, their removal (storage.py)"),
    Grant("operator", ("UPDATE (output_expires_at, output_removed_at)",),
          ("TABLE longtask.tasks",), "0004",
          "the retention: an export output's expiry and removal"),
    Grant("operator", ("SELECT (file_id)", "DELETE"), ("TABLE longtask.file_blocks",), "0004",
          "the retention removes a file's blocks (never reads their data)"),
    Grant("operator", ("SELECT (task_uid)", "DELETE"), ("TABLE longtask.export_parts",), "0004",
          "the retention removes an output's parts (never reads their data)"),
    Grant("operator", ("SELECT", "INSERT"), ("TABLE longtask.storage_removals",), "0004",
          "the retention's audit, one row a removal"),
    # ------------------------------------------------------------- 0005: live control
    Grant("operator", ("UPDATE (rate_limit)",), ("TABLE longtask.tasks",), "0005",
          "the live throttle: writes spec.rateLimit into the task record "
          "(taskrecord.set_rate_limit)"),
    # --------------------------------------------- 0006: the preflight's stored values
    # Every preflight query is filtered by the caller's organization (api/preflight.py).
    Grant("api", ("SELECT (organization_id, form_id, external_id, data)",),
          ("TABLE collect.baseline_records",), "0006",
          "the preflight: a column's sampled values against each field's stored values"),
    Grant("api", ("SELECT (organization_id)",), ("TABLE collect.submissions",), "0006",
          "the preflight: the span of an organization's submissions to a form"),
    Grant("api", ("SELECT (id, organization_id, name)",), ("TABLE collect.teams",), "0006",
          "the preflight: a teams file's teams that exist already"),
    Grant("api", ("SELECT (team_id, user_id, role)",), ("TABLE collect.team_memberships",),
          "0006", "the preflight: the managers of existing teams"),
    Grant("api", ("SELECT (id, organization_id, phone_e164, name)",),
          ("TABLE collect.field_users",), "0006",
          "the preflight: the phones of existing managers and of users by name"),
    # ------------------------------------------------ 0008: BulkSubmissionDelete
    Grant("runner", ("INSERT (id, organization_id, form_id, submitted_at, submitted_by, data)",
                     "DELETE"), ("TABLE collect.submissions",), "0008",
          "BulkSubmissionDelete deletes submissions; its rollback inserts them back with "
          "their ids"),
    Grant("api", ("EXECUTE",), (COUNT_MATCHING,), "0008",
          "the dry run of a BulkSubmissionDelete counts what its filter matches, through "
          "the owner's function: the API still reads no answer"),
    Grant("runner", ("EXECUTE",), (COUNT_MATCHING,), "0008",
          "a BulkSubmissionDelete counts what its filter matches (the progress total), as "
          "the dry run does"),
    # ------------------------------------------------------------- 0007: webhooks' outbox
    Grant("operator", ("SELECT", "INSERT (event_id, organization, task_uid, attributes, data)",
                       "UPDATE (attempts, next_attempt_at, last_error, delivered_at, "
                       "failed_at)", "DELETE"),
          ("TABLE longtask.notifications",), "0007",
          "the webhooks: a phase change's notification, its attempts, its pruning "
          "(operator/webhooks.py)"),
)


def configured(attributes: Mapping[str, object]) -> DatabaseRoles:
    """The role names a migration grants to: ``attributes["roles"]`` of alembic's config
    (``longtask-migrate`` passes them), else :class:`DatabaseRoles` from the environment."""
    given = attributes.get("roles")
    return given if isinstance(given, DatabaseRoles) else DatabaseRoles()


def of_migration(operations: Any) -> DatabaseRoles:
    """The role names a running migration grants to: :func:`configured` with the
    attributes of alembic's config (``operations`` is alembic's ``op``)."""
    config = operations.get_context().config
    return configured(config.attributes if config is not None else {})


def grant_revision(operations: Any, revision: str) -> None:
    """Run :func:`grant_sql` of ``revision`` in a migration's ``upgrade()``."""
    for statement in grant_sql(of_migration(operations), revision):
        operations.execute(statement)


def revoke_revision(operations: Any, revision: str) -> None:
    """Run :func:`revoke_sql` of ``revision`` in a migration's ``downgrade()``."""
    for statement in revoke_sql(of_migration(operations), revision):
        operations.execute(statement)


def granted(revision: str | None = None) -> tuple[Grant, ...]:
    """The rows of :data:`GRANTS` made by ``revision`` (None: all of them)."""
    return tuple(g for g in GRANTS if revision is None or g.since == revision)


def _statements(grants: Iterable[Grant], roles: DatabaseRoles, verb: str) -> list[str]:
    out = []
    for g in grants:
        role = roles.of(g.component)
        privileges = ", ".join(g.privileges)
        for obj in g.objects:
            if obj == "DATABASE":
                # GRANT takes no expression: the current database's name, quoted by format().
                word = "TO" if verb == "GRANT" else "FROM"
                out.append(f"DO $$ BEGIN EXECUTE format('{verb} {privileges} ON DATABASE %I "
                           f"{word} {role}', current_database()); END $$")
            else:
                out.append(f"{verb} {privileges} ON {obj} "
                           + ("TO" if verb == "GRANT" else "FROM") + f" {role}")
    return out


def create_roles_sql(roles: DatabaseRoles) -> list[str]:
    """Statements making each group role NOLOGIN unless it exists (made beforehand by a
    database administrator, or by an earlier run). Raises, in the server, a clear
    ``insufficient_privilege`` when the role is missing and the migration owner may not
    create roles."""
    out = []
    for component in COMPONENTS:
        role = roles.of(component)
        out.append(
            "DO $$ BEGIN\n"
            f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN\n"
            f"    CREATE ROLE {role} NOLOGIN;\n"
            "  END IF;\n"
            "EXCEPTION WHEN insufficient_privilege THEN\n"
            f"  RAISE EXCEPTION 'role {role} (group role of the {component}) does not exist "
            "and % may not create it', current_user\n"
            f"    USING ERRCODE = 'insufficient_privilege', HINT = 'create it first: "
            f"CREATE ROLE {role} NOLOGIN; or name another in "
            f"LONGTASK_DATABASE_ROLE_{component.upper()}';\n"
            "END $$"
        )
    return out


def grant_sql(roles: DatabaseRoles, revision: str | None = None) -> list[str]:
    """The GRANT statements of ``revision``'s rows (None: every row), in table order."""
    return _statements(granted(revision), roles, "GRANT")


def revoke_sql(roles: DatabaseRoles, revision: str | None = None) -> list[str]:
    """The REVOKE statements undoing :func:`grant_sql` of the same revision."""
    return _statements(reversed(granted(revision)), roles, "REVOKE")


def doc_sql(roles: DatabaseRoles | None = None) -> str:
    """Every grant as the SQL a database administrator runs on an existing server, one
    statement a line (the chart README prints it)."""
    roles = roles or DatabaseRoles()
    lines = []
    for component in COMPONENTS:
        lines.append(f"CREATE ROLE {roles.of(component)} NOLOGIN;")
    lines.append("REVOKE ALL ON SCHEMA collect, longtask FROM PUBLIC;")
    for g in GRANTS:
        for obj in g.objects:
            target = "DATABASE <database>" if obj == "DATABASE" else obj
            lines.append(f"GRANT {', '.join(g.privileges)} ON {target} TO {roles.of(g.component)};")
    return "\n".join(lines)


def doc_table(roles: DatabaseRoles | None = None) -> str:
    """Every grant as a Markdown table of role, privileges, objects and why
    (``docs/architecture.md`` prints it)."""
    roles = roles or DatabaseRoles()
    rows = ["| role | privileges | on | why |", "| --- | --- | --- | --- |"]
    for g in GRANTS:
        on = ", ".join("the database" if o == "DATABASE" else f"`{o.split(' ', 1)[1]}`"
                       for o in g.objects)
        privileges = "; ".join(p.replace("(", "(`").replace(")", "`)") for p in g.privileges)
        rows.append(f"| `{roles.of(g.component)}` | {privileges} | {on} | {g.why} |")
    return "\n".join(rows)


def table_privileges(component: Component) -> Mapping[str, set[str]]:
    """``{qualified table: {privilege words}}`` of ``component`` (columns dropped): what
    the tests compare with the server's ``has_table_privilege``."""
    out: dict[str, set[str]] = {}
    for g in GRANTS:
        if g.component != component:
            continue
        for table in g.tables:
            out.setdefault(table, set()).update(p.split(" ", 1)[0] for p in g.privileges)
    return out
