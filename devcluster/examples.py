"""The example organization, forms and files that the READMEs' examples use.

``python -m devcluster.stack`` loads them into its database; ``python -m devcluster.examples
--database-url URL --out DIR`` loads them into any migrated LongTask database. What is
made, for organization ``acme``:

- form ``villages`` (the Karnataka village list's 20 columns; key ``external_id``) and
  ``villages.csv``: its first 2,000 villages, each with an ``external_id`` (the list's own
  Village Code repeats across constituencies, so it cannot be the key);
- form ``Households`` (``head_name``, ``members``, ``phone``) and ``households.csv``:
  600 households keyed by ``household_id``;
- ``kunden.csv``: households saved by a spreadsheet in Windows-1252, which detection may
  not be sure of on so few bytes (the upload names its encoding);
- form ``household-survey`` with 300 submissions made in August 2017, to export;
- ``teams.csv``: three teams with their managers' and members' Indian phone numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extensions

from devcluster import realdata, seed
from longtask.db import connect

ORGANIZATION = "acme"
VILLAGE_ROWS = 2000
SUBMISSIONS = 300
HOUSEHOLD_ROWS = 600
HEADS = ("Awa Diop", "Moussa Fall", "Fatou Ndiaye", "Ibrahima Sarr", "Aminata Ba")
KUNDEN = (
    ("K-001", "Jürgen Müller", "3", ""),
    ("K-002", "Zoë Bäcker", "1", ""),
    ("K-003", "Björn Weiß", "5", ""),
)
TEAMS = (
    ("Mandya North", "9876543210", "9876543211;9876543212"),
    ("Mandya South", "9876543220", "9876543221"),
    ("Hassan East", "9876543230", ""),
)


@dataclass(frozen=True)
class Examples:
    """Where the example files are, and the organization they belong to."""

    organization: str
    folder: Path

    def file(self, name: str) -> Path:
        """One of the example files (``villages.csv``, ``households.csv``, ...)."""
        return self.folder / name


def _csv(rows: Sequence[Sequence[str]]) -> str:
    return "".join(",".join(row) + "\n" for row in rows)


def village_file(rows: int = VILLAGE_ROWS) -> tuple[list[str], str]:
    """(the form's field names, the CSV text): the first ``rows`` Karnataka villages with an
    ``external_id`` column in front."""
    lines = realdata.path(realdata.KARNATAKA).read_text(encoding="utf-8").splitlines()
    header, body = lines[0], lines[1:rows + 1]
    text = f"external_id,{header}\n" + "".join(
        f"V{i:07d},{line}\n" for i, line in enumerate(body, start=1))
    return header.split(","), text


def load(conn: psycopg2.extensions.connection, folder: Path,
         organization: str = ORGANIZATION) -> Examples:
    """Make the examples' organization, forms and submissions in the database behind
    ``conn`` (committed), and write their files into ``folder``. Raises
    ``psycopg2.errors.UniqueViolation`` when the forms exist already."""
    folder.mkdir(parents=True, exist_ok=True)
    org_id = seed.organization(conn, organization)
    fields, villages = village_file()
    seed.form(conn, org_id, "villages",
              [(name, "integer" if name in ("Block Code", "District Code") else "text",
                name == "Village Name") for name in fields])
    (folder / "villages.csv").write_text(villages, encoding="utf-8")
    seed.form(conn, org_id, "Households", [
        ("head_name", "text", True), ("members", "integer", False), ("phone", "phone", False)])
    header = ("household_id", "head_name", "members", "phone")
    households = [(f"H-{i:04d}", HEADS[i % len(HEADS)], str(1 + i % 9),
                   f"+221 77 {i // 100 % 100:02d}0 {i % 100:02d} {i % 97:02d}" if i % 4 else "")
                  for i in range(1, HOUSEHOLD_ROWS + 1)]
    (folder / "households.csv").write_text(_csv([header, *households]), encoding="utf-8")
    (folder / "kunden.csv").write_bytes(_csv([header, *KUNDEN]).encode("cp1252"))
    survey = seed.submission_form(conn, org_id)
    seed.submissions(conn, org_id, survey, SUBMISSIONS, dt.datetime(2017, 8, 1, tzinfo=dt.UTC),
                     dt.datetime(2017, 9, 1, tzinfo=dt.UTC))
    (folder / "teams.csv").write_text(
        _csv([("team", "manager_phone", "member_phones"), *TEAMS]), encoding="utf-8")
    if not conn.autocommit:
        conn.commit()
    return Examples(organization, folder)


def main(argv: Sequence[str] | None = None) -> int:
    """Load the examples into a database; 0 when done, 1 when they could not be made."""
    parser = argparse.ArgumentParser(
        prog="python -m devcluster.examples",
        description="Make the READMEs' example organization, forms and submissions in a "
                    "migrated LongTask database, and write the example files.")
    parser.add_argument("--database-url", required=True, help="libpq URL of the database")
    parser.add_argument("--out", type=Path, default=Path("examples"),
                        help="folder for the example files (default: ./examples)")
    args = parser.parse_args(argv)
    try:
        conn = connect(args.database_url, application_name="longtask-examples")
        try:
            made = load(conn, args.out)
        finally:
            conn.close()
    except psycopg2.Error as exc:
        print(f"the examples could not be loaded: {exc}".strip(), file=sys.stderr)
        return 1
    print(f"organization {made.organization}: forms villages, Households, household-survey "
          f"({SUBMISSIONS} submissions); files in {made.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
