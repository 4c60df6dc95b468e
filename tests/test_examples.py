"""``python -m devcluster.examples``: the READMEs' example data, in any migrated database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg2.extensions
import pytest

from devcluster import examples

pytestmark = pytest.mark.timeout(120)


def test_the_command_loads_the_forms_and_writes_the_files(
        db_url: str, db: psycopg2.extensions.connection, tmp_path: Path) -> None:
    out = tmp_path / "examples"
    done = subprocess.run([sys.executable, "-m", "devcluster.examples", "--database-url",
                           db_url, "--out", str(out)], capture_output=True, text=True,
                          timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    with db.cursor() as cur:
        cur.execute("SELECT f.name, count(*) FROM collect.forms f JOIN collect.organizations o "
                    "ON o.id = f.organization_id JOIN collect.form_fields ff "
                    "ON ff.form_id = f.id WHERE o.slug = 'acme' GROUP BY f.name ORDER BY 1")
        forms = dict(cur.fetchall())
        cur.execute("SELECT count(*) FROM collect.submissions")
        submissions = cur.fetchone()[0]  # type: ignore[index]
    assert forms == {"Households": 3, "household-survey": 7, "villages": 20}
    assert submissions == examples.SUBMISSIONS
    assert sorted(p.name for p in out.iterdir()) == [
        "households.csv", "kunden.csv", "teams.csv", "villages.csv"]
    assert len((out / "villages.csv").read_text().splitlines()) == examples.VILLAGE_ROWS + 1
    assert "Jürgen".encode("cp1252") in (out / "kunden.csv").read_bytes()

    again = subprocess.run([sys.executable, "-m", "devcluster.examples", "--database-url",
                            db_url, "--out", str(out)], capture_output=True, text=True,
                           timeout=60, check=False)
    assert again.returncode == 1 and "the examples could not be loaded" in again.stderr
