"""BulkTeamCreate against a real PostgreSQL server, on the real NHS practice list."""

from __future__ import annotations

import pytest
import runner_support as s

from longtask import constants

HEADER = "team,manager_phone,member_phones\n"


@pytest.fixture
def org(db):  # type: ignore[no-untyped-def]
    return s.create_org(db)


def teams_task(db_url: str, text: str, **params: object) -> s.TaskDefinition:
    file_id = s.store_bytes(db_url, text.encode())
    return s.task("BulkTeamCreate", {"fileId": file_id, "defaultRegion": "IN", **params})


def count(db, table: str) -> int:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM collect.{table}")
        return int(cur.fetchone()[0])


def members(db, team: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute("SELECT u.phone_e164, m.role FROM collect.team_memberships m "
                    "JOIN collect.teams t ON t.id = m.team_id "
                    "JOIN collect.field_users u ON u.id = m.user_id WHERE t.name = %s "
                    "ORDER BY m.role, u.phone_e164", (team,))
        return list(cur.fetchall())


def test_real_practice_list_creates_one_team_per_named_practice(
        runner_db_url, db, db_url, org, real_data):
    file_id = s.store_bytes(db_url, (real_data / "epraccur.csv").read_bytes(),
                            filename="epraccur.csv")
    task = s.task("BulkTeamCreate", {"fileId": file_id, "defaultRegion": "GB",
                                     "hasHeader": False, "teamColumn": "#2",
                                     "managerPhoneColumn": "#18", "memberPhonesColumn": None,
                                     "maxRowErrors": 5000})
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE

    rec = s.record(db, task.uid)
    teams = count(db, "teams")
    assert rec["total"] == 14357 and rec["done"] == 14357
    assert teams + rec["row_errors"] == 14357, "every row is a team or a row error"
    assert teams > 13000
    assert members(db, "THE DENSHAM SURGERY") == [("+441642672351", "manager")]
    reasons = [r for _l, _c, r in s.row_errors(db, task.uid)]
    assert any("appears again" in r for r in reasons), "repeated practice names are reported"
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM collect.field_users")
        users = cur.fetchone()[0]
    assert users < teams, "practices sharing a phone number share one user"


def test_users_are_reused_and_the_manager_is_not_also_a_member(runner_db_url, db, db_url, org):
    text = HEADER + ("North,98765 43210,+919876543210;9812345678|09898989898\n"
                     "South,9812345678,98765-43210\n")
    task = teams_task(db_url, text)
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    assert members(db, "North") == [("+919876543210", "manager"), ("+919812345678", "member"),
                                    ("+919898989898", "member")]
    assert members(db, "South") == [("+919812345678", "manager"), ("+919876543210", "member")]
    assert count(db, "field_users") == 3


def test_bad_phones_existing_and_repeated_teams_are_row_errors(runner_db_url, db, db_url, org):
    with db.cursor() as cur:
        cur.execute("INSERT INTO collect.teams (organization_id, name) VALUES (%s, 'East')",
                    (org,))
    text = HEADER + ("North,12345,\n"
                     "East,9876543210,\n"
                     "West,9876543210,98123 45678;not a phone\n"
                     "South,9876543210,\n"
                     "South,9812345678,\n"
                     ",9812345678,\n")
    task = teams_task(db_url, text)
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    errors = s.row_errors(db, task.uid)
    assert [(line, column) for line, column, _r in errors] == [
        (2, "manager_phone"), (3, "team"), (4, "member_phones"), (6, "team"), (7, "team")]
    assert "already exists" in errors[1][2]
    assert "appears again" in errors[3][2]
    with db.cursor() as cur:
        cur.execute("SELECT name FROM collect.teams WHERE task_uid IS NOT NULL")
        assert [r[0] for r in cur.fetchall()] == ["South"]


def test_rollback_removes_what_the_task_created_and_keeps_what_others_touched(
        runner_db_url, db, db_url, org):
    with db.cursor() as cur:
        cur.execute("INSERT INTO collect.field_users (organization_id, phone_e164, name) "
                    "VALUES (%s, '+919812345678', 'Existing user') RETURNING id", (org,))
    before = s.snapshot(db)
    text = HEADER + ("North,9876543210,9812345678;9898989898\n"
                     "South,9811111111,9822222222\n"
                     "West,9833333333,\n")
    task = teams_task(db_url, text)
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    with db.cursor() as cur:
        # Someone else adds a member to South, and puts a user the task made in their team.
        cur.execute("INSERT INTO collect.teams (organization_id, name) VALUES (%s, 'Others') "
                    "RETURNING id", (org,))
        others = cur.fetchone()[0]
        cur.execute("INSERT INTO collect.field_users (organization_id, phone_e164) "
                    "VALUES (%s, '+919844444444') RETURNING id", (org,))
        outsider = cur.fetchone()[0]
        cur.execute("INSERT INTO collect.team_memberships (team_id, user_id, role) "
                    "SELECT id, %s, 'member' FROM collect.teams WHERE name = 'South'",
                    (outsider,))
        cur.execute("INSERT INTO collect.team_memberships (team_id, user_id, role) "
                    "SELECT %s, id, 'manager' FROM collect.field_users "
                    "WHERE phone_e164 = '+919833333333'", (others,))
        # And renames West.
        cur.execute("UPDATE collect.teams SET name = 'West (renamed)' WHERE name = 'West'")

    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE

    with db.cursor() as cur:
        cur.execute("SELECT name FROM collect.teams ORDER BY name")
        assert [r[0] for r in cur.fetchall()] == ["Others", "South", "West (renamed)"]
        # The teams that stay keep the manager and members the task gave them.
        assert members(db, "South") == [("+919811111111", "manager"),
                                        ("+919822222222", "member"), ("+919844444444", "member")]
        assert members(db, "West (renamed)") == [("+919833333333", "manager")]
        assert members(db, "North") == []
        cur.execute("SELECT phone_e164 FROM collect.field_users ORDER BY 1")
        assert [r[0] for r in cur.fetchall()] == [
            "+919811111111", "+919812345678", "+919822222222", "+919833333333",
            "+919844444444"]
        cur.execute("SELECT table_name, reason FROM longtask.rollback_conflicts "
                    "ORDER BY table_name, row_id")
        conflicts = cur.fetchall()
    kept_with_team = ("team_memberships", "kept with its row in teams, which stays (changed "
                                          "or referenced by others)")
    assert conflicts == [
        ("field_users", "still referenced by rows that stay"),
        ("field_users", "still referenced by rows that stay"),
        ("field_users", "still referenced by rows that stay"),
        kept_with_team, kept_with_team, kept_with_team,
        ("teams", "still referenced by rows that stay"),
        ("teams", "changed by someone else after the task inserted it"),
    ]
    rec = s.record(db, task.uid)
    assert rec["rollback_conflicts"] == 8
    assert before["field_users"][0] == 1


def test_rollback_after_completion_restores_every_table(runner_db_url, db, db_url, org):
    before = s.snapshot(db)
    text = HEADER + "".join(f"Team {i},98{i:08d},97{i:08d};96{i:08d}\n" for i in range(500))
    task = teams_task(db_url, text)
    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE
    assert count(db, "teams") == 500 and count(db, "field_users") == 1500
    assert s.run_inline(runner_db_url, task, "rollback") == constants.EXIT_DONE
    assert s.snapshot(db) == before


def test_a_file_without_a_member_column_makes_teams_with_managers_only(
        runner_db_url, db, db_url, org):
    # memberPhonesColumn left at its default (member_phones), which this file lacks.
    task = teams_task(db_url, "team,manager_phone\nNorth,9876543210\nSouth,9876543211\n")

    assert s.run_inline(runner_db_url, task) == constants.EXIT_DONE

    assert count(db, "teams") == 2
    assert members(db, "North") == [("+919876543210", "manager")]


def test_a_member_column_the_task_names_must_be_in_the_file(runner_db_url, db, db_url, org):
    task = teams_task(db_url, "team,manager_phone\nNorth,9876543210\n",
                      memberPhonesColumn="member_phones")

    assert s.run_inline(runner_db_url, task) == constants.EXIT_FAILED

    rec = s.record(db, task.uid)
    assert "no column named 'member_phones' for the member phones" in rec["message"], rec
    assert count(db, "teams") == 0
