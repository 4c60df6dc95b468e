"""A task type from a distribution of its own, built and installed by the test: found
through its entry point by the registry, the API's schema and the runner, run against the
real PostgreSQL as the runner's role, stopped, resumed and rolled back; a broken plug-in
stops the process naming itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import runner_support as s

from longtask import constants

pytestmark = pytest.mark.timeout(180)

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "longtask-example-teams"
version = "0.1.0"
requires-python = ">=3.11"

[project.entry-points."longtask.task_types"]
NumberedTeams = "longtask_example:TASK_TYPE"

[tool.setuptools]
packages = ["longtask_example"]
"""

# What the entry point loads: the declaration only, so the API and the operator never
# import the type's run.
DECLARATION = '''\
"""NumberedTeams: the teams "<prefix> 1" to "<prefix> <count>" of an organization."""

from pydantic import Field

from longtask import tasktypes


class NumberedTeamsParams(tasktypes.Params):
    prefix: str = Field(min_length=1, max_length=50)
    count: int = Field(ge=1, le=100_000)


TASK_TYPE = tasktypes.TaskType(
    name="NumberedTeams",
    params_model=NumberedTeamsParams,
    default_concurrency_key=lambda org, _params: f"NumberedTeams/{org}",
    description="Teams named <prefix> 1 to <prefix> <count>",
    runner="longtask_example.work:NumberedTeams",
    rollback="longtask_example.work:ROLLBACK",
)
'''

WORK = '''\
"""The run of NumberedTeams: each chunk inserts the next teams, marked with the task."""

from longtask.runner.engine import ChunkResult
from longtask.runner.rollback import DeleteInserted
from longtask.runner.tasks import common

ROLLBACK = (DeleteInserted("teams", referenced_by=(("team_memberships", "team_id"),)),)


class NumberedTeams:
    max_row_errors = None

    def __init__(self, task, params, read_conn, stop, settings, *, connect=None,
                 read_ahead=True):
        self.task, self.params, self.read_conn, self.stop = task, params, read_conn, stop
        self.next = 1

    def open(self, cursor):
        self.org = common.organization_id(self.read_conn, self.task.organization)
        if cursor:
            self.next = int(cursor["next"])
            return None
        return self.params.count

    def chunk(self, cur, limit):
        self.stop.check()
        last = min(self.params.count, self.next + limit - 1)
        cur.execute(
            "INSERT INTO collect.teams (organization_id, name, task_uid) "
            "SELECT %s, %s || ' ' || i, %s FROM generate_series(%s, %s) AS i",
            (self.org, self.params.prefix, str(self.task.uid), self.next, last))
        done, self.next = last - self.next + 1, last + 1
        return ChunkResult(rows=done, cursor={"next": self.next},
                           exhausted=self.next > self.params.count)

    def total(self):
        return None

    def close(self):
        pass
'''


def build(tmp: Path, declaration: str = DECLARATION) -> Path:
    """The example distribution built into a wheel and installed into a folder of its
    own (not the suite's environment); that folder, for PYTHONPATH."""
    source = tmp / "src"
    (source / "longtask_example").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "longtask_example" / "__init__.py").write_text(declaration)
    (source / "longtask_example" / "work.py").write_text(WORK)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-index", "--no-build-isolation",
                    "-w", str(tmp / "dist"), str(source)], check=True, timeout=120)
    wheel = next((tmp / "dist").glob("longtask_example_teams-0.1.0-*.whl"))
    site = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, timeout=120)
    return site


def with_plugin(site: Path) -> dict[str, str]:
    # No empty entry: that would put the working directory on sys.path.
    paths = [str(site), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter with ``env`` (safe path: the repository's
    operator/ must not shadow the standard library's operator)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "PYTHONSAFEPATH": "1", **env})


def teams(db, prefix: str) -> list[str]:  # type: ignore[no-untyped-def]
    with db.cursor() as cur:
        cur.execute("SELECT name FROM collect.teams WHERE name LIKE %s ORDER BY id",
                    (prefix + " %",))
        names = [r[0] for r in cur.fetchall()]
    db.commit()
    return names


def test_a_plug_in_type_is_known_to_the_registry_and_the_apis_schema(tmp_path: Path) -> None:
    env = with_plugin(build(tmp_path))
    done = python("""
        import json
        from longtask import tasktypes
        from longtask.api.schemas import TaskCreate
        params = tasktypes.parse_params("NumberedTeams", {"prefix": "Ward", "count": 3})
        schema = TaskCreate.model_json_schema()
        print(json.dumps({"registry": sorted(tasktypes.REGISTRY),
                          "enum": schema["properties"]["type"].get("enum"),
                          "key": tasktypes.default_concurrency_key("NumberedTeams", "acme", {}),
                          "count": params.count}))
    """, env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["registry"] == sorted(["BaselineUpload", "Export", "BulkTeamCreate",
                                       "BulkSubmissionDelete", "NumberedTeams"]), seen
    assert "NumberedTeams" in seen["enum"], "the API's OpenAPI document lists it"
    assert (seen["key"], seen["count"]) == ("NumberedTeams/acme", 3)

    refused = python("""
        from longtask import tasktypes
        tasktypes.parse_params("NumberedTeams", {"prefix": "Ward", "count": 0})
    """, env)
    assert refused.returncode == 1 and "count" in refused.stderr, refused.stderr


def test_a_plug_in_type_runs_stops_resumes_and_rolls_back(runner_db_url, db,
                                                           tmp_path: Path) -> None:
    env = with_plugin(build(tmp_path))
    s.create_org(db)
    db.commit()
    task = s.task("NumberedTeams", {"prefix": "Ward", "count": 6000}, rate_limit=2000)
    proc = s.spawn(runner_db_url, task, env=env, log=tmp_path / "run.log")
    s.wait_for_progress(db, task.uid, proc, tmp_path / "run.log")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == constants.EXIT_STOPPED
    partial = s.record(db, task.uid)["done"]
    assert 0 < partial < 6000 and len(teams(db, "Ward")) == partial

    again = s.spawn(runner_db_url, task, env=env, log=tmp_path / "run.log")
    assert again.wait(timeout=60) == constants.EXIT_DONE, (tmp_path / "run.log").read_text()
    assert teams(db, "Ward") == [f"Ward {i}" for i in range(1, 6001)], "each once, in order"
    rec = s.record(db, task.uid)
    assert (rec["run_status"], rec["total"], rec["done"]) == ("succeeded", 6000, 6000)

    back = s.spawn(runner_db_url, task, "rollback", env=env, log=tmp_path / "rollback.log")
    assert back.wait(timeout=60) == constants.EXIT_DONE, (tmp_path / "rollback.log").read_text()
    assert teams(db, "Ward") == []


def test_a_broken_plug_in_stops_the_process_naming_the_distribution(tmp_path: Path) -> None:
    broken = DECLARATION.replace("TASK_TYPE = tasktypes.TaskType(",
                                 "TASK_TYPO = tasktypes.TaskType(")
    env = with_plugin(build(tmp_path, broken))
    done = python("import longtask.tasktypes", env)
    assert done.returncode == 1
    assert "PluginError" in done.stderr and "longtask-example-teams 0.1.0" in done.stderr, \
        done.stderr
    assert "'NumberedTeams' = 'longtask_example:TASK_TYPE'" in done.stderr, done.stderr


def test_without_the_plug_in_its_tasks_fail_saying_which_types_are_known(runner_db_url, db):
    s.create_org(db)
    db.commit()
    task = s.task("NumberedTeams", {"prefix": "Ward", "count": 3}, uid=uuid.uuid4())
    assert s.run_inline(runner_db_url, task) == constants.EXIT_FAILED
    message = s.record(db, task.uid)["message"]
    assert "unknown task type 'NumberedTeams'" in message and "BaselineUpload" in message
