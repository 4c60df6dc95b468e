"""How the demo drives tasks: the :class:`Control` interface and its runner-process form.

:class:`ProcessControl` plays the operator's part with plain processes on this machine:
start runs the runner, pause sends it SIGTERM (what suspending its Job does), resume runs
it again from its checkpoint, terminate stops it and runs the rollback. The full-stack demo
drives the same cases through the REST API instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg2.extras

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
    """Start, pause, resume and terminate tasks, and read their status."""

    def start(self, task_type: str, organization: str, params: dict[str, Any],
              rate_limit: float | None = None) -> str:
        """Start a task; returns its handle (name or uid)."""
        ...

    def pause(self, handle: str) -> None: ...

    def resume(self, handle: str) -> None: ...

    def terminate(self, handle: str, rollback: bool = True) -> None: ...

    def status(self, handle: str) -> Status: ...


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
