"""BulkTeamCreate: teams with a manager and members, users identified by phone.

Rules (also in the README):

- Each row names a team, its manager's phone and (optionally) its members' phones;
  phones are normalised to E.164 (:func:`longtask.values.normalize_phone`) with the task's
  ``defaultRegion`` for numbers written without a country code.
- A team that already exists is a row error (bulk creation never edits a team); the same
  team twice in the file: the first row wins, later ones are row errors.
- Users are looked up by phone and created where missing; a user created by the task
  carries its id, so rollback removes it unless someone else has since put it in a team.
- The manager is not listed again as a member of the same team.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from longtask.runner.engine import ChunkResult, Cursor, RowError
from longtask.runner.tasks import common

from longtask.csvsource import RecordBatch
from longtask.tasktypes import BulkTeamCreateParams
from longtask.values import InvalidValue, normalize_header, normalize_phone, parse_member_phones


def member_phones_ref(params: BulkTeamCreateParams, index: Mapping[str, int]) -> str | None:
    """The column of member phones to read, or None for teams without members.

    ``memberPhonesColumn: null`` means none; left out, its default (``member_phones``)
    applies when the file has that column, and a file of teams and managers only (no such
    column) makes teams without members. A column the task names is required.
    ``index`` is the header's {normalized name: position} (empty without a header).
    """
    ref = params.member_phones_column
    if (ref is not None and params.has_header
            and "member_phones_column" not in params.model_fields_set
            and normalize_header(ref) not in index):
        return None
    return ref


class BulkTeamCreate(common.TaskWork[BulkTeamCreateParams, tuple[str, str, list[str]]]):
    """The run of a BulkTeamCreate task (a :class:`~longtask.runner.engine.Work`)."""

    def open(self, cursor: Mapping[str, Any] | None) -> int | None:
        p = self.params
        self.org_id = common.organization_id(self.read_conn, self.task.organization)
        info, csv_file = common.open_csv(self.read_conn, p.file_id, self.task.organization,
                                         self.settings, has_header=p.has_header,
                                         delimiter=p.delimiter)
        header = csv_file.header()
        index = common.header_index(header, info.filename) if p.has_header else {}
        self._team = common.column_of(p.team_column, index, "team name", info.filename)
        self._manager = common.column_of(p.manager_phone_column, index, "manager phone",
                                         info.filename)
        members = member_phones_ref(p, index)
        self._members = (None if members is None else common.column_of(
            members, index, "member phones", info.filename))
        width = len(header.names) if p.has_header else None
        return self.start_reading(info, csv_file, header, cursor, width)


    def parse_rows(self, batch: RecordBatch,
                   errors: list[RowError]) -> list[tuple[str, str, list[str]] | None]:
        """(team, manager E.164, member E.164s) of each readable record, None for the
        others, appending their row errors."""
        return [None if fields is None else self._parse_row(line, fields, errors)
                for line, fields in zip(batch.lines, batch.rows, strict=True)]

    def _parse_row(self, line: int, fields: list[str],
                   errors: list[RowError]) -> tuple[str, str, list[str]] | None:
        p = self.params
        team = " ".join(common.cell(fields, self._team).split())
        if not team:
            errors.append(RowError(line, "the team name is blank", p.team_column))
            return None
        raw_manager = common.cell(fields, self._manager)
        try:
            manager = normalize_phone(raw_manager, p.default_region)
        except InvalidValue as exc:
            errors.append(RowError(line, exc.reason, p.manager_phone_column, raw_manager))
            return None
        members: list[str] = []
        if self._members is not None:
            raw_members = common.cell(fields, self._members)
            try:
                members = [m for m in parse_member_phones(raw_members, p.default_region)
                           if m != manager]
            except InvalidValue as exc:
                errors.append(RowError(line, exc.reason, p.member_phones_column,
                                       raw_members))
                return None
        return team, manager, members

    def chunk(self, cur: Cursor, limit: int) -> ChunkResult:
        assert self._prefetch is not None, "open() first"
        batch = self._prefetch.take(limit)
        errors = batch.errors
        rows: dict[str, tuple[int, str, list[str]]] = {}
        for line, item in zip(batch.lines, batch.items, strict=True):
            if item is None:
                continue
            team, manager, members = item
            if team in rows:
                errors.append(RowError(line, f"team {team!r} appears again; first on "
                                       f"line {rows[team][0]}", self.params.team_column, team))
                continue
            rows[team] = (line, manager, members)
        self.stop.check()
        if rows:
            self._write(cur, rows, errors)
        return ChunkResult(rows=len(batch), cursor=batch.end.to_json(),
                           exhausted=batch.exhausted, errors=errors)

    def _write(self, cur: Cursor, rows: dict[str, tuple[int, str, list[str]]],
               errors: list[RowError]) -> None:
        uid, org = self.task.uid, self.org_id
        names = list(rows)
        cur.execute(
            "INSERT INTO collect.teams (organization_id, name, task_uid) "
            "SELECT %s, n, %s FROM unnest(%s::text[]) WITH ORDINALITY AS u(n, o) ORDER BY o "
            "ON CONFLICT (organization_id, name) DO NOTHING RETURNING id, name",
            (org, uid, names),
        )
        team_ids = {name: tid for tid, name in cur.fetchall()}
        if len(team_ids) < len(names):
            cur.execute(
                "SELECT name, task_uid = %s FROM collect.teams WHERE organization_id = %s "
                "AND name = ANY(%s)",
                (uid, org, [n for n in names if n not in team_ids]),
            )
            for name, ours in cur.fetchall():
                line = rows[name][0]
                reason = (f"team {name!r} appears again; an earlier line of this file has it"
                          if ours else f"team {name!r} already exists")
                errors.append(RowError(line, reason, self.params.team_column, name))
        if not team_ids:
            return
        phones = sorted({p for n in team_ids for p in (rows[n][1], *rows[n][2])})
        cur.execute(
            "INSERT INTO collect.field_users (organization_id, phone_e164, task_uid) "
            "SELECT %s, p, %s FROM unnest(%s::text[]) AS p "
            "ON CONFLICT (organization_id, phone_e164) DO NOTHING",
            (org, uid, phones),
        )
        cur.execute(
            "SELECT phone_e164, id FROM collect.field_users WHERE organization_id = %s "
            "AND phone_e164 = ANY(%s)",
            (org, phones),
        )
        user_ids = dict(cur.fetchall())
        team_col, user_col, role_col = [], [], []
        for name, team_id in team_ids.items():
            _line, manager, members = rows[name]
            team_col.append(team_id)
            user_col.append(user_ids[manager])
            role_col.append("manager")
            for member in members:
                team_col.append(team_id)
                user_col.append(user_ids[member])
                role_col.append("member")
        cur.execute(
            "INSERT INTO collect.team_memberships (team_id, user_id, role, task_uid) "
            "SELECT t, u, r, %s FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS m(t, u, r)",
            (uid, team_col, user_col, role_col),
        )
