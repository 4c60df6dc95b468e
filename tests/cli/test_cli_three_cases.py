"""The three cases of README.md played with the ``longtask`` command, run as a subprocess
for every step (upload, validate, start, pause, resume, terminate, status, output), at
small sizes, by the demo's own checked script (``demo/cases.py``): the database is checked
after every step and no runner pod may be left after a pause or a terminate. Then ``wait``
is asked about every task each case started: exit 0 for the ones that succeeded, 3 for
the ones rolled back."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CASES_ORG, run_cli

from demo.cases import Demo, Sizes
from demo.control import Status
from devcluster import stack
from longtask.db import connect

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

SIZES = Sizes(baseline_rows=3_000, second_rows=1_500, submissions=20_000, teams=800,
              upload_rate=500, teams_rate=100)


class CliControl:
    """:class:`demo.control.Inspecting` by running ``longtask ... --json`` for each step."""

    def __init__(self, live: stack.Stack, env: dict[str, str], workdir: Path) -> None:
        self.live, self.env, self.workdir = live, env, workdir
        self.started: dict[str, str] = {}   # task name -> organization

    def run(self, organization: str, *args: str, codes: tuple[int, ...] = (0,)
            ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "LONGTASK_API_URL": self.live.api_url,
               "LONGTASK_TOKEN": self.live.tokens[organization]}
        done = run_cli(args, env, self.workdir, 120)
        assert done.returncode in codes and "Traceback" not in done.stderr, (
            f"longtask {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def json(self, organization: str, *args: str, codes: tuple[int, ...] = (0,)) -> Any:
        return json.loads(self.run(organization, *args, "--json", codes=codes).stdout)

    def _request_file(self, task_type: str, organization: str, params: dict[str, Any],
                      **extra: Any) -> str:
        path = self.workdir / f"request-{len(list(self.workdir.iterdir()))}.json"
        path.write_text(json.dumps({"type": task_type, "organization": organization,
                                    "params": params, **extra}))
        return str(path)

    def upload(self, data: bytes, filename: str, organization: str) -> str:
        path = self.workdir / filename
        path.write_bytes(data)
        return str(self.json(organization, "upload", str(path), "--org", organization)["id"])

    def validate(self, task_type: str, organization: str, params: dict[str, Any]) -> Any:
        return self.json(organization, "validate", "-f",
                         self._request_file(task_type, organization, params), codes=(0, 3))

    def start(self, task_type: str, organization: str, params: dict[str, Any],
              rate_limit: float | None = None) -> str:
        extra = {"rateLimit": int(rate_limit)} if rate_limit else {}
        task = self.json(organization, "start", "-f",
                         self._request_file(task_type, organization, params, **extra),
                         "--reason", "the three cases, by the command")
        self.started[task["name"]] = organization
        return str(task["name"])

    def pause(self, handle: str) -> None:
        self.run(self.started[handle], "pause", handle, "--reason", "checking the data")

    def resume(self, handle: str) -> None:
        self.run(self.started[handle], "resume", handle, "--reason", "the data looks right")

    def terminate(self, handle: str, rollback: bool = True) -> None:
        self.run(self.started[handle], "terminate", handle, "--reason", "wrong input file",
                 "--rollback" if rollback else "--keep")

    def _task(self, handle: str) -> Any:
        return self.json(self.started[handle], "get", handle)

    def status(self, handle: str) -> Status:
        body = self._task(handle)
        phase = body["phase"]
        rolling = phase in ("RollingBack", "RolledBack") and body.get("rollback")
        progress = (body.get("rollback") if rolling else body.get("progress")) or {}
        return Status(phase=phase, total=progress.get("total"),
                      done=int(progress.get("done") or 0),
                      row_errors=int((body.get("progress") or {}).get("rowErrors") or 0),
                      rate=progress.get("ratePerSecond"), eta=progress.get("etaSeconds"),
                      message=body.get("message"))

    def uid(self, handle: str) -> str:
        return str(self._task(handle)["uid"])

    def output(self, handle: str) -> tuple[bytes, dict[str, str]]:
        target = self.workdir / f"{handle}.csv"
        facts = self.json(self.started[handle], "output", handle, "-o", str(target))
        data = target.read_bytes()
        assert facts["bytes"] == len(data)
        return data, {"content-length": str(facts["bytes"])}

    def check_wait_codes(self) -> None:
        """``wait --for Succeeded`` on every task started: 0 for those that succeeded, 3
        for the others, with the phase in the JSON."""
        for name, organization in self.started.items():
            done = self.run(organization, "wait", name, "--for", "Succeeded",
                            "--timeout", "30", "--json", codes=(0, 3))
            phase = json.loads(done.stdout)["phase"]
            assert done.returncode == (0 if phase == "Succeeded" else 3), (name, phase)
            assert phase in ("Succeeded", "RolledBack"), (name, phase)
        self.started.clear()


@pytest.fixture(scope="module")
def control(live: stack.Stack, cli_env_module: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> CliControl:
    return CliControl(live, cli_env_module, Path(tmp_path_factory.mktemp("cli-cases")))


@pytest.fixture(scope="module")
def demo(live: stack.Stack, control: CliControl) -> Iterator[Demo]:
    conn = connect(live.db_url, application_name="longtask-cli-cases")
    conn.autocommit = True
    try:
        yield Demo(control, conn, CASES_ORG, SIZES, live.runner_pods)
    finally:
        conn.close()


def test_baseline_upload_by_the_command(demo: Demo, control: CliControl) -> None:
    demo.baseline()
    control.check_wait_codes()


def test_export_by_the_command(demo: Demo, control: CliControl) -> None:
    demo.export()
    control.check_wait_codes()


def test_team_creation_by_the_command(demo: Demo, control: CliControl) -> None:
    demo.teams()
    control.check_wait_codes()
