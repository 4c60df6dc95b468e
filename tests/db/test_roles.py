"""One database role per component: each logs in with its own role and is refused
(SQLSTATE 42501, insufficient_privilege) what it must not do, and allowed what it does.

The components' own suites prove the grants are enough: the runner's tests run the runner
as ``runner_db_url``, the API's serve the API as ``api_db_url``, the operator's cluster
tests run the operator as ``operator_db_url`` and the runner pods as ``runner_db_url``.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import pytest
from pydantic import ValidationError

from devcluster import postgres
from longtask import filestore, storage, taskrecord
from longtask.db import connect
from longtask.db.migrate import downgrade, upgrade
from longtask.db.roles import (
    COMPONENTS,
    GRANTS,
    DatabaseRoles,
    doc_sql,
    doc_table,
    table_privileges,
)
from longtask.settings import MigrateSettings

REPO = Path(__file__).resolve().parent.parent.parent
INSUFFICIENT_PRIVILEGE = "42501"
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
TASK = taskrecord.TaskRecord(uid=uuid.UUID("00000000-0000-4000-8000-000000000001"),
                             type="Export", organization="acme",
                             params={"form": "f", "from": "2017-08-01", "to": "2017-08-31"})


@pytest.fixture
def as_role(api_db_url: str, operator_db_url: str,
            runner_db_url: str) -> Iterator[dict[str, psycopg2.extensions.connection]]:
    """An autocommit connection of each component's login role."""
    urls = {"api": api_db_url, "operator": operator_db_url, "runner": runner_db_url}
    conns = {name: connect(url, application_name=f"longtask-test-{name}")
             for name, url in urls.items()}
    for conn in conns.values():
        conn.autocommit = True
    try:
        yield conns
    finally:
        for conn in conns.values():
            conn.close()


@pytest.fixture
def seeded(db: psycopg2.extensions.connection) -> None:
    """An organization, a form, a submission, a team with a manager, and a task record."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO collect.organizations (slug, name) VALUES ('acme', 'Acme')")
        cur.execute("INSERT INTO collect.forms (organization_id, name) SELECT id, 'f' "
                    "FROM collect.organizations")
        cur.execute("INSERT INTO collect.submissions (organization_id, form_id, submitted_at, "
                    "data) SELECT organization_id, id, now(), '{\"answer\": 1}' FROM collect.forms")
        cur.execute("INSERT INTO collect.teams (organization_id, name) SELECT id, 't' "
                    "FROM collect.organizations")
        cur.execute("INSERT INTO collect.field_users (organization_id, phone_e164) "
                    "SELECT id, '+919876543210' FROM collect.organizations")
        cur.execute("INSERT INTO longtask.tasks (uid, type, organization, params) "
                    "VALUES (%s, 'Export', 'acme', '{}')", (TASK.uid,))


def refused(conn: psycopg2.extensions.connection, statement: str) -> None:
    """Assert the server refuses ``statement`` for lack of privilege."""
    with pytest.raises(psycopg2.Error) as caught, conn.cursor() as cur:
        cur.execute(statement)
    assert caught.value.pgcode == INSUFFICIENT_PRIVILEGE, (
        f"{statement!r}: expected 42501, got {caught.value.pgcode}: {caught.value}")


def allowed(conn: psycopg2.extensions.connection, statement: str) -> None:
    """Run ``statement``; it must succeed (inside a transaction rolled back afterwards)."""
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.rollback()
        conn.autocommit = True


# -------------------------------------------------------------------- the grants, exactly


def test_each_group_role_holds_exactly_the_privileges_of_the_grants_table(db):
    roles = DatabaseRoles()
    with db.cursor() as cur:
        cur.execute("SELECT schemaname || '.' || tablename FROM pg_tables "
                    "WHERE schemaname IN ('collect', 'longtask') ORDER BY 1")
        tables = [r[0] for r in cur.fetchall()]
        for component in COMPONENTS:
            expected = table_privileges(component)
            for table in tables:
                held = set()
                for privilege in TABLE_PRIVILEGES:
                    check = ("has_any_column_privilege" if privilege in
                             ("SELECT", "INSERT", "UPDATE", "REFERENCES") else
                             "has_table_privilege")
                    cur.execute(f"SELECT {check}(%s, %s, %s)",
                                (roles.of(component), table, privilege))
                    if cur.fetchone()[0]:
                        held.add(privilege)
                assert held == expected.get(table, set()), (
                    f"{roles.of(component)} on {table}: holds {sorted(held)}, "
                    f"the grants table says {sorted(expected.get(table, set()))}")
    named = {t for g in GRANTS for t in g.tables}
    assert named <= set(tables), f"grants name tables that do not exist: {named - set(tables)}"


def test_group_roles_cannot_log_in_and_own_nothing(db):
    with db.cursor() as cur:
        for component in COMPONENTS:
            role = DatabaseRoles().of(component)
            cur.execute("SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb "
                        "FROM pg_roles WHERE rolname = %s", (role,))
            assert cur.fetchone() == (False, False, False, False), role
            cur.execute("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                        "WHERE r.rolname = %s", (role,))
            assert cur.fetchone()[0] == 0, f"{role} owns relations"


# ------------------------------------------------------------------------------- runner


def test_the_runner_runs_no_ddl(as_role, seeded):
    runner = as_role["runner"]
    for statement in (
        "CREATE TABLE longtask.evil (id int)",
        "CREATE TABLE collect.evil (id int)",
        "CREATE TABLE public.evil (id int)",
        "CREATE SCHEMA evil",
        "ALTER TABLE longtask.tasks ADD COLUMN evil int",
        "ALTER TABLE collect.teams DISABLE TRIGGER teams_version",
        "DROP TABLE longtask.undo_journal",
        "TRUNCATE collect.baseline_records",
        "CREATE INDEX evil ON collect.submissions (submitted_by)",
        "CREATE FUNCTION longtask.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ):
        refused(runner, statement)


def test_the_runner_may_not_write_the_hold(as_role, seeded):
    runner = as_role["runner"]
    refused(runner, f"UPDATE longtask.tasks SET hold = NULL WHERE uid = '{TASK.uid}'")
    refused(runner, "INSERT INTO longtask.tasks (uid, type, organization, params, hold) "
                    "VALUES (gen_random_uuid(), 'Export', 'acme', '{}', NULL)")
    refused(runner, f"DELETE FROM longtask.tasks WHERE uid = '{TASK.uid}'")
    refused(runner, f"UPDATE longtask.tasks SET organization = 'globex' WHERE uid = '{TASK.uid}'")
    # ... but reads it, under the chunk's row lock, and writes its own columns.
    allowed(runner, f"SELECT hold FROM longtask.tasks WHERE uid = '{TASK.uid}' FOR UPDATE")
    allowed(runner, f"UPDATE longtask.tasks SET epoch = epoch + 1 WHERE uid = '{TASK.uid}'")


def test_the_runner_may_not_touch_what_no_task_writes(as_role, seeded):
    runner = as_role["runner"]
    for statement in (
        "UPDATE collect.submissions SET data = '{}'",
        # (it may delete submissions and insert them back: BulkSubmissionDelete, 0008)
        "UPDATE collect.submissions SET submitted_at = now()",
        "INSERT INTO collect.organizations (slug, name) VALUES ('evil', 'Evil')",
        "UPDATE collect.forms SET name = 'x'",
        "DELETE FROM collect.form_fields",
        "UPDATE collect.teams SET name = 'renamed'",
        "UPDATE collect.field_users SET phone_e164 = '+441234567890'",
        "UPDATE collect.baseline_records SET organization_id = 2",
        "INSERT INTO longtask.files (id, organization, filename, block_size) "
        "VALUES (gen_random_uuid(), 'acme', 'x', 1)",
        "DELETE FROM longtask.file_blocks",
        "DELETE FROM longtask.row_errors",
        "DELETE FROM longtask.undo_journal",
        "SELECT * FROM longtask.row_errors",
        "UPDATE longtask.storage_usage SET used_bytes = 0",
        "SELECT longtask.storage_charge('acme', -1000)",
        "SELECT * FROM longtask.storage_removals",
    ):
        refused(runner, statement)


def test_the_runner_stages_in_a_temporary_table(as_role, seeded):
    allowed(as_role["runner"], "CREATE TEMP TABLE stage (line bigint) ON COMMIT DROP")


# ---------------------------------------------------------------------------------- API


def test_the_api_may_not_write_collect_data_nor_read_answers(as_role, seeded):
    api = as_role["api"]
    for statement in (
        "INSERT INTO collect.baseline_records (organization_id, form_id, external_id, data) "
        "VALUES (1, 1, 'x', '{}')",
        "UPDATE collect.teams SET name = 'renamed'",
        "DELETE FROM collect.field_users",
        "DELETE FROM collect.team_memberships",
        "INSERT INTO collect.organizations (slug, name) VALUES ('evil', 'Evil')",
        "SELECT data FROM collect.submissions",
        "SELECT submitted_by FROM collect.submissions",
        "SELECT * FROM collect.teams",
        "SELECT * FROM collect.baseline_records",
        "SELECT task_uid FROM collect.baseline_records",
        "SELECT task_uid FROM collect.teams",
        "SELECT task_uid FROM collect.field_users",
        "SELECT task_uid FROM collect.team_memberships",
        "CREATE TABLE longtask.evil (id int)",
    ):
        refused(api, statement)
    allowed(api, "SELECT count(*) FROM collect.submissions WHERE form_id = 1 "
                 "AND submitted_at >= now() - interval '1 day'")
    # A delete's dry run counts what its filter matches, through the owner's function
    # (migration 0008): a count, never an answer.
    allowed(api, "SELECT longtask.count_matching_submissions(1, now() - interval '1 day', "
                 "now(), '{\"village\": \"x\"}')")


def test_the_api_reads_the_stored_values_its_preflight_compares_with(as_role, seeded):
    """Migration 0006: the columns api/preflight.py reads, and those only."""
    api = as_role["api"]
    allowed(api, "SELECT external_id, data FROM collect.baseline_records "
                 "WHERE organization_id = 1 AND form_id = 1 ORDER BY external_id LIMIT 5")
    allowed(api, "SELECT min(submitted_at) FROM collect.submissions "
                 "WHERE organization_id = 1 AND form_id = 1")
    allowed(api, "SELECT t.name, u.phone_e164, u.name FROM collect.teams t "
                 "JOIN collect.team_memberships m ON m.team_id = t.id AND m.role = 'manager' "
                 "JOIN collect.field_users u ON u.id = m.user_id WHERE t.organization_id = 1")


def test_the_api_writes_only_the_hold_of_a_task_record(as_role, seeded):
    api = as_role["api"]
    for statement in (
        f"UPDATE longtask.tasks SET run_status = 'succeeded' WHERE uid = '{TASK.uid}'",
        f"UPDATE longtask.tasks SET epoch = epoch + 1 WHERE uid = '{TASK.uid}'",
        f"DELETE FROM longtask.tasks WHERE uid = '{TASK.uid}'",
        "INSERT INTO longtask.export_parts (task_uid, part, rows, data, sha256) "
        f"VALUES ('{TASK.uid}', 0, 0, '', '')",
        f"DELETE FROM longtask.export_parts WHERE task_uid = '{TASK.uid}'",
        f"INSERT INTO longtask.row_errors (task_uid, line, reason) VALUES ('{TASK.uid}', 1, 'x')",
        "UPDATE longtask.files SET organization = 'globex'",
        "UPDATE longtask.storage_usage SET used_bytes = 0",
        "UPDATE longtask.storage_usage SET quota_bytes = NULL",
        "SELECT longtask.storage_charge('acme', -1000)",
        "DELETE FROM longtask.storage_removals",
    ):
        refused(api, statement)
    api.autocommit = False
    assert taskrecord.hold(api, TASK, "Paused")
    assert taskrecord.release(api, TASK)


def test_the_api_stores_and_reads_files(as_role, seeded):
    api = as_role["api"]
    api.autocommit = False
    info = filestore.store(api, io.BytesIO(b"a,b\n1,2\n"), organization="acme",
                           filename="x.csv")
    api.autocommit = True
    assert b"".join(filestore.read_blocks(api, filestore.info(api, info.id))) == b"a,b\n1,2\n"


def test_each_role_passes_the_quota_and_the_usage_follows(as_role, seeded):
    """The quota's lock works as the API's and the runner's roles; the bytes are counted
    by the owner's trigger functions, which no role may call itself."""
    api = as_role["api"]
    api.autocommit = False
    info = filestore.store(api, io.BytesIO(b"a,b\n1,2\n"), organization="acme",
                           filename="q.csv", quota_bytes=1 << 20, expires_in_seconds=60)
    api.autocommit = True
    used = storage.usage(api, "acme", 1 << 20).used
    assert used >= info.size_bytes
    runner = as_role["runner"]
    runner.autocommit = False
    with runner.cursor() as cur:
        assert storage.check(cur, "acme", 1, 1 << 20).used == used
    runner.rollback()
    runner.autocommit = True


# ----------------------------------------------------------------------------- operator


def test_the_operator_writes_the_rate_limit_of_a_record_and_no_other_run_column(as_role,
                                                                                seeded):
    op = as_role["operator"]
    for statement in (
        f"UPDATE longtask.tasks SET epoch = epoch + 1 WHERE uid = '{TASK.uid}'",
        f"UPDATE longtask.tasks SET done = 0 WHERE uid = '{TASK.uid}'",
    ):
        refused(op, statement)
    refused(as_role["api"], f"UPDATE longtask.tasks SET rate_limit = 1 WHERE uid = '{TASK.uid}'")
    op.autocommit = False
    assert taskrecord.set_rate_limit(op, TASK.uid, 25)
    op.autocommit = True
    with op.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        record = taskrecord.read(cur, TASK.uid)
    assert record is not None and record.rate_limit == 25
    op.autocommit = False
    assert taskrecord.set_rate_limit(op, TASK.uid, None)
    op.autocommit = True
    with op.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        record = taskrecord.read(cur, TASK.uid)
    assert record is not None and record.rate_limit is None


def test_the_operator_reads_the_record_and_writes_only_its_hold(as_role, seeded):
    op = as_role["operator"]
    for statement in (
        "SELECT * FROM collect.organizations",
        "SELECT * FROM collect.submissions",
        "SELECT longtask.count_matching_submissions(1, now(), now(), '{}')",
        "UPDATE collect.teams SET name = 'renamed'",
        # The retention reads the files' facts and removes blocks and parts, never their data.
        "SELECT data FROM longtask.file_blocks",
        "SELECT data FROM longtask.export_parts",
        "UPDATE longtask.files SET size_bytes = 0",
        "UPDATE longtask.storage_usage SET used_bytes = 0",
        "SELECT longtask.storage_charge('acme', -1000)",
        f"UPDATE longtask.tasks SET run_status = 'failed' WHERE uid = '{TASK.uid}'",
        f"INSERT INTO longtask.row_errors (task_uid, line, reason) VALUES ('{TASK.uid}', 1, 'x')",
        "CREATE TABLE longtask.evil (id int)",
    ):
        refused(op, statement)
    op.autocommit = False
    other = taskrecord.TaskRecord(uid=uuid.uuid4(), type="Export", organization="acme",
                                  params={})
    assert taskrecord.hold(op, other, "Terminated"), "a hold makes the record when it is new"
    assert taskrecord.release(op, other)
    op.autocommit = True
    with op.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        record = taskrecord.read(cur, other.uid)
    assert record is not None and record.run_status == "pending"


# ---------------------------------------------------------------------------- migration


def test_the_migration_runs_again_and_as_an_owner_who_may_not_create_roles(pg_server_url,
                                                                            migrated_template):
    owner, name = "longtask_test_owner", f"t_owner_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(pg_server_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
            if not cur.fetchone():
                cur.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOCREATEROLE")
            cur.execute(f"CREATE DATABASE {name} OWNER {owner}")
        url = postgres.with_user(pg_server_url.rpartition("/")[0] + f"/{name}", owner)
        upgrade(url)  # the group roles exist: made by the session's first migration
        downgrade(url, "0002")
        upgrade(url)
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT has_table_privilege('longtask_runner', 'longtask.chunks', "
                        "'INSERT'), tableowner FROM pg_tables WHERE schemaname = 'longtask' "
                        "AND tablename = 'chunks'")
            assert cur.fetchone() == (True, owner)
        conn.close()
        # A group role that does not exist and cannot be made: a clear error, nothing left.
        missing = DatabaseRoles(runner=f"longtask_missing_{uuid.uuid4().hex[:6]}")
        downgrade(url, "base")
        with pytest.raises(Exception) as caught:
            upgrade(url, roles=missing)
        assert "does not exist" in str(caught.value) and missing.runner in str(caught.value)
        assert "CREATE ROLE" in str(caught.value), "the hint says what to do"
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN "
                        "('collect', 'longtask')")
            assert cur.fetchone()[0] == 0, "the failed upgrade left schemas behind"
        conn.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
# --------------------------------------------------------------------------------- docs


def test_the_chart_readme_prints_the_grants_of_the_table():
    readme = (REPO / "charts" / "longtask" / "README.md").read_text(encoding="utf-8")
    assert doc_sql() in readme, "charts/longtask/README.md: paste longtask.db.roles.doc_sql()"


def test_the_architecture_doc_prints_the_grants_of_the_table():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert doc_table() in doc, "docs/architecture.md: paste longtask.db.roles.doc_table()"


def test_the_group_roles_can_have_other_names(pg_server_url, migrated_template):
    names = DatabaseRoles(api="longtask_test_other_api", operator="longtask_test_other_op",
                          runner="longtask_test_other_runner")
    name = f"t_names_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(pg_server_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        url = pg_server_url.rpartition("/")[0] + f"/{name}"
        upgrade(url, roles=names)
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT has_table_privilege(%s, 'longtask.chunks', 'INSERT'), "
                        "has_table_privilege('longtask_runner', 'longtask.chunks', 'INSERT'), "
                        "has_column_privilege(%s, 'longtask.tasks', 'hold', 'UPDATE')",
                        (names.runner, names.operator))
            assert cur.fetchone() == (True, False, True)
        conn.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_a_role_name_that_is_not_a_plain_identifier_is_refused(monkeypatch):
    monkeypatch.setenv("LONGTASK_DATABASE_ROLE_RUNNER", "runner; DROP TABLE x")
    with pytest.raises(ValidationError, match="runner"):
        DatabaseRoles()


def test_migrations_read_the_owners_url_before_the_shared_one(monkeypatch):
    monkeypatch.delenv("LONGTASK_MIGRATE_DATABASE_URL", raising=False)
    monkeypatch.setenv("LONGTASK_DATABASE_URL", "postgresql://shared@db/collect")
    assert MigrateSettings().database_url == "postgresql://shared@db/collect"
    monkeypatch.setenv("LONGTASK_MIGRATE_DATABASE_URL", "postgresql://owner@db/collect")
    assert MigrateSettings().database_url == "postgresql://owner@db/collect"
