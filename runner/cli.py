"""The runner's command line: ``python -m longtask.runner run|rollback --task UID``.

The task's type, organization and parameters come from the environment the operator's Job
sets (``LONGTASK_TASK_*``), or from options of the same names; the database from
``LONGTASK_DATABASE_URL``. Exit codes (``longtask.constants``): 0 done, 3 failed for good,
75 stopped by a signal before the end, 76 fenced out by a newer runner, 1 crashed (a
database not reached within the connect timeout among the causes).

The data work runs in a worker thread so the main thread is free to take SIGTERM at any
moment: the handler sets the stop token, which cancels the statement in flight. If the work
has not ended ``stop_deadline_seconds`` after the stop (a server that does not answer), the
main thread exits with the stop's code without it.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from types import FrameType
from typing import Any, NoReturn

import psycopg2
import pydantic
from longtask.runner.engine import Engine, StopToken
from longtask.runner.errors import Fenced, Stopped, TaskFailed
from longtask.runner.tasks import build_work

from longtask import constants, logs, taskrecord
from longtask.db import connect
from longtask.settings import DatabaseSettings, RunnerSettings
from longtask.taskrecord import Mode, TaskRecord

log = logging.getLogger("longtask.runner")


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m longtask.runner",
                                description="Run or roll back one LongTask.")
    p.add_argument("mode", choices=["run", "rollback"])
    p.add_argument("--task", default=env(constants.ENV_TASK_UID), help="the task's uid")
    p.add_argument("--type", default=env(constants.ENV_TASK_TYPE))
    p.add_argument("--organization", default=env(constants.ENV_TASK_ORGANIZATION))
    p.add_argument("--params", default=env(constants.ENV_TASK_PARAMS, "{}"),
                   help="the task's parameters as a JSON object")
    p.add_argument("--name", default=env(constants.ENV_TASK_NAME))
    p.add_argument("--namespace", default=env(constants.ENV_TASK_NAMESPACE))
    p.add_argument("--rate-limit", type=float, default=env(constants.ENV_RATE_LIMIT),
                   help="rows per second at most")
    p.add_argument("--database-url", default=None, help="default: $LONGTASK_DATABASE_URL")
    p.add_argument("--log-level", default=env("LONGTASK_LOG_LEVEL", "INFO"))
    return p


def definition_from(args: argparse.Namespace) -> TaskRecord:
    """Build the task definition from parsed options; ``SystemExit(2)`` when incomplete."""
    missing = [name for name in ("task", "type", "organization") if not getattr(args, name)]
    if missing:
        raise SystemExit(f"missing --{', --'.join(missing)} (or their LONGTASK_TASK_* variables)")
    try:
        params = json.loads(args.params)
        uid = uuid.UUID(args.task)
    except ValueError as exc:
        raise SystemExit(f"invalid --task or --params: {exc}") from None
    if not isinstance(params, dict):
        raise SystemExit("--params must be a JSON object")
    return TaskRecord(uid=uid, type=args.type, organization=args.organization,
                          params=params, name=args.name, namespace=args.namespace,
                          rate_limit=float(args.rate_limit) if args.rate_limit else None)


_SWITCH_INTERVAL = 0.001  # seconds
_EXIT_CRASHED = 1


def execute(task: TaskRecord, mode: Mode, url: str, stop: StopToken,
            settings: RunnerSettings | None = None) -> int:
    """Run ``mode`` of ``task`` to an end; returns the process exit code.

    Sets the interpreter's GIL switch interval to 1 ms: the reading thread is CPU-bound,
    and the thread that talks to the database (and a signal handler) must get the GIL back
    within a millisecond after each statement, not the default 5.
    """
    sys.setswitchinterval(_SWITCH_INTERVAL)
    settings = settings or RunnerSettings()
    holder = os.environ.get(constants.ENV_POD_NAME) or f"{socket.gethostname()}:{os.getpid()}"
    conn = read_conn = None
    engine: Engine | None = None
    try:
        try:
            conn = _connection(url, f"longtask-runner-{mode}", settings)
            read_conn = _read_connection(url, mode, settings, "read")
        except psycopg2.OperationalError as exc:
            if stop.is_set():
                raise Stopped(stop.reason or "stop requested") from None
            log.error("database_connect_failed", extra={
                "task": str(task.uid), "mode": mode, "error": str(exc).strip(),
                "connect_timeout_seconds": settings.connect_timeout_seconds})
            return _EXIT_CRASHED
        stop.bind(conn)
        taskrecord.register(conn, task)
        engine = Engine(conn, task.uid, mode, stop=stop, holder=holder, settings=settings)
        record = engine.acquire()
        work = build_work(task, mode, read_conn, stop, settings,
                          connect=functools.partial(_read_connection, url, mode, settings))
        engine.run(work, record)
        log.info("task_complete", extra={"task": str(task.uid), "mode": mode})
        return constants.EXIT_DONE
    except Stopped as exc:
        log.info("task_stopped", extra={"task": str(task.uid), "mode": mode, "reason": str(exc)})
        if engine is not None:
            engine.record_stop(str(exc))
        return constants.EXIT_STOPPED
    except Fenced as exc:
        log.warning("task_fenced", extra={"task": str(task.uid), "mode": mode,
                                          "reason": str(exc)})
        return constants.EXIT_FENCED
    except TaskFailed as exc:
        log.error("task_failed", extra={"task": str(task.uid), "mode": mode, "reason": str(exc)})
        if engine is not None and engine.epoch:
            engine.record_failure(str(exc))
        elif conn is not None:
            _record_early_failure(conn, task.uid, mode, str(exc))
        return constants.EXIT_FAILED
    finally:
        stop.bind(None)
        for c in (conn, read_conn):
            if c is not None:
                c.close()


def _connection(url: str, name: str, settings: RunnerSettings) -> Any:
    """Every connection of the runner is opened here: named ``name``, with the settings'
    statement timeout, connect timeout and TCP keepalives (a value the URL gives wins).

    Raises ``psycopg2.OperationalError`` when the database cannot be reached.
    """
    return connect(url, application_name=name,
                   statement_timeout=settings.statement_timeout_seconds,
                   options=settings.libpq_options())


def _read_connection(url: str, mode: Mode, settings: RunnerSettings, purpose: str) -> Any:
    """A new autocommit connection for reading, named ``longtask-runner-<mode>-<purpose>``
    (see :func:`_connection`)."""
    conn = _connection(url, f"longtask-runner-{mode}-{purpose}", settings)
    conn.autocommit = True
    return conn


def _record_early_failure(conn: Any, uid: uuid.UUID, mode: Mode, message: str) -> None:
    try:
        with conn.cursor() as cur:
            taskrecord.fail_early(cur, uid, mode, message)
        conn.commit()
    except psycopg2.Error as exc:
        log.warning("failure_not_recorded", extra={"task": str(uid), "error": str(exc)})


def main(argv: list[str] | None = None, early_signals: list[int] | None = None) -> None:
    """Entry point: parse, install the signal handlers, run the worker, exit with its code.

    ``early_signals`` holds signals that arrived before this module was imported.
    """
    args = _parser().parse_args(argv)
    logs.setup(args.log_level.upper())
    task = definition_from(args)
    url = args.database_url or DatabaseSettings().database_url  # type: ignore[call-arg]
    try:
        settings = RunnerSettings()
    except pydantic.ValidationError as exc:
        log.error("settings_invalid", extra={"task": str(task.uid), "error": str(exc)})
        sys.exit(_EXIT_CRASHED)
    stop = StopToken()
    sys.setswitchinterval(_SWITCH_INTERVAL)  # before execute(), for the signal handler

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.request(f"{signal.Signals(signum).name} received")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if early_signals:
        log.info("task_stopped", extra={"task": str(task.uid), "reason": "SIGTERM at start"})
        sys.exit(constants.EXIT_STOPPED)
    outcome: list[int] = []

    def work() -> None:
        # Signals must reach the main thread: one delivered to this thread would only set
        # a flag, and the handler would wait until the main thread next woke.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            outcome.append(execute(task, args.mode, url, stop, settings))
        except BaseException:
            log.exception("runner_crashed", extra={"task": str(task.uid)})
            outcome.append(_EXIT_CRASHED)

    # A daemon: should the main thread ever leave by an exception, a stuck worker cannot
    # hold the process.
    worker = threading.Thread(target=work, name="longtask-worker", daemon=True)
    worker.start()
    while worker.is_alive():
        if stop.requested_monotonic is None:
            worker.join(0.5)  # wakes for signals: their handlers run on this thread
            continue
        left = stop.requested_monotonic + settings.stop_deadline_seconds - time.monotonic()
        if left <= 0:
            _abandon(worker, task, settings.stop_deadline_seconds)
        worker.join(left)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is committed or rolled back and every connection closed: skip the
    # interpreter's slow module teardown so a stopped pod goes away at once.
    os._exit(outcome[0] if outcome else 1)


def _abandon(worker: threading.Thread, task: TaskRecord, deadline: float) -> NoReturn:
    """Exit with the stop's code while ``worker`` is still stuck (a statement the server
    does not answer, a connection it does not complete); never returns.

    Nothing is written after the stop all the same: a chunk commits only if its COMMIT was
    sent, and the engine checks the stop right before sending it; the transaction left
    open is rolled back by the server when this process's connections drop.
    """
    frame = sys._current_frames().get(worker.ident or -1)
    log.warning("stop_deadline_passed", extra={
        "task": str(task.uid), "deadline_seconds": deadline,
        "worker_at": None if frame is None else
        f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"})
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(constants.EXIT_STOPPED)
