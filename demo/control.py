"""How the demo drives tasks: the :class:`Control` interface and its two forms.

- :class:`ApiControl` is what a user or a pipeline does: every step through the REST API,
  with the operator and Kubernetes doing the rest.
- :class:`ProcessControl` plays the operator's part with plain processes on this machine
  (``--runner-only``): start runs the runner, pause sends it SIGTERM (what suspending its
  Job does), resume runs it again from its checkpoint, terminate stops it and runs the
  rollback.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import psycopg2.extras

from longtask import filestore
from longtask.db import connect


@dataclass(frozen=True)
class Status:
    """What a user sees of a task: phase and progress."""

    phase: str
    total: int | None
    done: int
    row_errors: int
    rate: float | None
    eta: float | None
    message: str | None = None


class Control(Protocol):
    """Upload files; start, pause, resume and terminate tasks; read their status."""

    def upload(self, data: bytes, filename: str, organization: str) -> str:
        """Store a file; returns its id."""
        ...

    def start(self, task_type: str, organization: str, params: dict[str, Any],
              rate_limit: float | None = None) -> str:
        """Start a task; returns its handle (name or uid)."""
        ...

    def pause(self, handle: str) -> None: ...

    def resume(self, handle: str) -> None: ...

    def terminate(self, handle: str, rollback: bool = True) -> None: ...

    def status(self, handle: str) -> Status: ...

    def uid(self, handle: str) -> str:
        """The task's uid (the runner's record and the rows it wrote carry it)."""
        ...


@runtime_checkable
class Inspecting(Control, Protocol):
    """A control that also shows the dry run and downloads an export's output (the API's,
    and the ``longtask`` command's in tests/cli)."""

    def validate(self, task_type: str, organization: str, params: dict[str, Any]) -> Any:
        """The dry run's report (``POST /v1/tasks/validate``)."""
        ...

    def output(self, handle: str) -> tuple[bytes, dict[str, str]]:
        """An export's CSV and the response headers."""
        ...


class ProcessControl:
    """Runs each task as runner processes against ``db_url``; logs go to ``log_dir``."""

    def __init__(self, db_url: str, log_dir: Path) -> None:
        self.db_url = db_url
        self.log_dir = log_dir
        self.conn = connect(db_url, application_name="longtask-demo")
        self.conn.autocommit = True
        self._tasks: dict[str, list[str]] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._phase: dict[str, str] = {}

    def upload(self, data: bytes, filename: str, organization: str) -> str:
        info = filestore.store(self.conn, io.BytesIO(data), organization=organization,
                               filename=filename)
        return str(info.id)

    def _spawn(self, handle: str, mode: str) -> None:
        env = {**os.environ, "LONGTASK_DATABASE_URL": self.db_url}
        with (self.log_dir / f"{handle}.log").open("ab") as log:
            self._procs[handle] = subprocess.Popen(
                [sys.executable, "-m", "longtask.runner", mode, *self._tasks[handle]],
                env=env, stdout=log, stderr=log)

    def start(self, task_type: str, organization: str, params: dict[str, Any],
              rate_limit: float | None = None) -> str:
        uid = str(uuid.uuid4())
        self._tasks[uid] = ["--task", uid, "--type", task_type, "--organization",
                            organization, "--params", json.dumps(params)]
        if rate_limit:
            self._tasks[uid] += ["--rate-limit", str(rate_limit)]
        self._spawn(uid, "run")
        self._phase[uid] = "Running"
        return uid

    def _stop(self, handle: str) -> None:
        proc = self._procs.get(handle)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

    def pause(self, handle: str) -> None:
        self._phase[handle] = "Pausing"
        self._stop(handle)
        self._phase[handle] = "Paused"

    def resume(self, handle: str) -> None:
        self._spawn(handle, "run")
        self._phase[handle] = "Running"

    def terminate(self, handle: str, rollback: bool = True) -> None:
        self._phase[handle] = "Terminating"
        self._stop(handle)
        if rollback:
            self._spawn(handle, "rollback")
            self._phase[handle] = "RollingBack"
        else:
            self._phase[handle] = "Terminated"

    def uid(self, handle: str) -> str:
        return handle

    def status(self, handle: str) -> Status:
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SELECT * FROM longtask.tasks WHERE uid = %s", (handle,))
            rec: dict[str, Any] = cur.fetchone() or {}
        phase = self._phase[handle]
        proc = self._procs.get(handle)
        if phase == "Running" and proc is not None and proc.poll() is not None:
            phase = {"succeeded": "Succeeded", "failed": "Failed"}.get(
                rec.get("run_status", ""), "Running")
        if phase == "RollingBack" and rec.get("rollback_status") == "succeeded":
            phase = "RolledBack"
        rolling = phase in ("RollingBack", "RolledBack")
        return Status(
            phase=phase,
            total=rec.get("rollback_total" if rolling else "total"),
            done=int(rec.get("rollback_done" if rolling else "done") or 0),
            row_errors=int(rec.get("row_errors") or 0),
            rate=rec.get("rate_per_second"),
            eta=rec.get("eta_seconds"),
            message=rec.get("message"),
        )

    def close(self) -> None:
        """Stop every runner process still going."""
        for handle in list(self._procs):
            self._stop(handle)
        self.conn.close()


def wait_for(control: Control, handle: str, phases: set[str], *, timeout: float,
             show: Any = None) -> Status:
    """Poll until the task's phase is one of ``phases``; ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        status = control.status(handle)
        if show is not None:
            show(status)
        if status.phase in phases:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {handle} still {status.phase} after {timeout:.0f} s")
        time.sleep(0.25)


class ApiControl:
    """Drives tasks through the REST API at ``base_url`` with one bearer token per org."""

    def __init__(self, base_url: str, tokens: dict[str, str]) -> None:
        import httpx

        self.tokens = tokens
        self.http = httpx.Client(base_url=base_url, timeout=60)
        self._org: dict[str, str] = {}

    def _headers(self, organization: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[organization]}"}

    def _ok(self, response: Any) -> Any:
        if response.status_code >= 400:
            raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                               f"{response.status_code} {response.text[:500]}")
        return response.json()

    def upload(self, data: bytes, filename: str, organization: str) -> str:
        body = self._ok(self.http.post(
            "/v1/files", params={"organization": organization},
            files={"file": (filename, data, "text/csv")}, headers=self._headers(organization)))
        return str(body["id"])

    def validate(self, task_type: str, organization: str, params: dict[str, Any]) -> Any:
        """The dry run's report (``POST /v1/tasks/validate``)."""
        return self._ok(self.http.post(
            "/v1/tasks/validate", json={"type": task_type, "organization": organization,
                                        "params": params},
            headers=self._headers(organization)))

    def start(self, task_type: str, organization: str, params: dict[str, Any],
              rate_limit: float | None = None) -> str:
        request: dict[str, Any] = {"type": task_type, "organization": organization,
                                   "params": params, "reason": "demo"}
        if rate_limit:
            request["rateLimit"] = int(rate_limit)
        body = self._ok(self.http.post("/v1/tasks", json=request,
                                       headers=self._headers(organization)))
        self._org[body["name"]] = organization
        return str(body["name"])

    def _control(self, handle: str, action: str, **body: Any) -> None:
        self._ok(self.http.post(f"/v1/tasks/{handle}/{action}", json=body,
                                headers=self._headers(self._org[handle])))

    def pause(self, handle: str) -> None:
        self._control(handle, "pause", reason="checking the data")

    def resume(self, handle: str) -> None:
        self._control(handle, "resume", reason="the data looks right")

    def terminate(self, handle: str, rollback: bool = True) -> None:
        self._control(handle, "terminate", rollback=rollback, reason="wrong input file")

    def status(self, handle: str) -> Status:
        body = self._ok(self.http.get(f"/v1/tasks/{handle}",
                                      headers=self._headers(self._org[handle])))
        phase = body["phase"]
        rolling = phase in ("RollingBack", "RolledBack") and body.get("rollback")
        progress = (body.get("rollback") if rolling else body.get("progress")) or {}
        return Status(phase=phase, total=progress.get("total"),
                      done=int(progress.get("done") or 0),
                      row_errors=int((body.get("progress") or {}).get("rowErrors") or 0),
                      rate=progress.get("ratePerSecond"), eta=progress.get("etaSeconds"),
                      message=body.get("message"))

    def uid(self, handle: str) -> str:
        body = self._ok(self.http.get(f"/v1/tasks/{handle}",
                                      headers=self._headers(self._org[handle])))
        return str(body["uid"])

    def output(self, handle: str) -> tuple[bytes, dict[str, str]]:
        """An export's CSV and the response headers."""
        response = self.http.get(f"/v1/tasks/{handle}/output",
                                 headers=self._headers(self._org[handle]))
        if response.status_code != 200:
            raise RuntimeError(f"output: {response.status_code} {response.text[:300]}")
        return response.content, dict(response.headers)

    def close(self) -> None:
        self.http.close()
