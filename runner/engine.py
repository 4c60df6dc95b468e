"""The chunk engine every task type runs on: lease, fencing, checkpoints, stop, progress.

Contract (README.md, "The runner's contract"; the record's statements are
:mod:`longtask.taskrecord`'s):

- **Exactly once.** Each chunk is one transaction holding the chunk's writes, its row
  errors, its entry in the chunk log and the checkpoint (cursor, counts). A restarted runner
  continues from the last committed checkpoint.
- **Fencing.** A runner bumps ``longtask.tasks.epoch`` when it starts; that number is its
  fencing token. Each chunk first locks the task row and checks the epoch is still its own,
  and holds that lock to its commit, so a stale runner commits nothing and a new runner
  takes over after at most one chunk of the old one.
- **Nothing after stop.** :class:`StopToken` is set from the SIGTERM handler, which also
  cancels the statement in flight. The engine checks the token before every commit and
  rolls the chunk back if it is set; only a commit already sent may complete.
- **Bounded chunks.** Chunk size adapts so a chunk takes about ``chunk_target_seconds``; an
  optional rate limit (rows per second) caps throughput so a task cannot starve the
  database.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
from longtask.runner.errors import Fenced, Stopped, TaskFailed, TooManyRowErrors

from longtask import taskrecord
from longtask.settings import RunnerSettings
from longtask.taskrecord import Mode, TaskRecord, register

__all__ = ["ChunkResult", "Engine", "Mode", "RowError", "StopToken", "TaskDefinition", "Work",
           "register"]

log = logging.getLogger("longtask.runner")

Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor

# status.progress.ratePerSecond: rows committed per second over about the last
# RATE_WINDOW_SECONDS of the run, measured from commit to commit (a throttled task's first
# chunk, written at once, is not a rate), and none until the commits span
# RATE_MIN_SPAN_SECONDS.
RATE_WINDOW_SECONDS = 30.0
RATE_MIN_SPAN_SECONDS = 1.0


class RateWindow:
    """Rows per second over a sliding window of a run's commits.

    Points are ``(monotonic seconds, rows of the run committed by then)``, one per commit;
    the rate is the rows committed after the oldest point kept over the time since it: the
    newest point at least ``window`` seconds old anchors the window, so it spans about
    ``window`` seconds once the run is that old.
    """

    def __init__(self, window: float = RATE_WINDOW_SECONDS,
                 min_span: float = RATE_MIN_SPAN_SECONDS) -> None:
        self.window, self.min_span = window, min_span
        self._points: collections.deque[tuple[float, int]] = collections.deque()

    def rate(self, now: float, rows: int) -> float | None:
        """The rate if ``rows`` (the run's count, the chunk being committed included) were
        committed at ``now``; None before the commits span ``min_span`` seconds."""
        while len(self._points) > 1 and self._points[1][0] <= now - self.window:
            self._points.popleft()
        if not self._points or now - self._points[0][0] < self.min_span:
            return None
        at, done = self._points[0]
        return (rows - done) / (now - at)

    def committed(self, now: float, rows: int) -> None:
        """A commit at ``now`` brought the run's count to ``rows``."""
        self._points.append((now, rows))

    def restart(self) -> None:
        """Forget every commit but the newest: the rate measures only what came after it
        (a new rate limit), ``None`` again until the commits span ``min_span``."""
        while len(self._points) > 1:
            self._points.popleft()


class StopToken:
    """Set once a stop is requested; cancels the statement in flight on the bound connection."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self.reason: str | None = None
        self.requested_at: float | None = None  # time.time() of the request
        self.requested_monotonic: float | None = None  # time.monotonic() of the request

    def bind(self, conn: Connection | None) -> None:
        """Name the connection whose in-flight statement a stop must cancel."""
        with self._lock:
            self._conn = conn

    def request(self, reason: str, *, cancel: bool = True) -> None:
        """Ask the engine to stop (idempotent); safe from a signal handler or another thread.

        Never blocks: the cancel goes to the server from a thread of its own, since a cancel
        request opens a connection to the server and waits for the server to close it,
        which a server that does not answer never does. ``cancel=False`` when the caller
        is the engine's own thread, between statements.
        """
        if self._event.is_set():
            return
        self.reason = reason
        self.requested_at = time.time()
        self.requested_monotonic = time.monotonic()
        self._event.set()
        log.info("stop_requested", extra={"reason": reason})
        if not cancel:
            return
        with self._lock:
            conn = self._conn
        if conn is not None and not conn.closed:
            threading.Thread(target=_cancel, args=(conn,), name="longtask-cancel",
                             daemon=True).start()

    def is_set(self) -> bool:
        """True once a stop was requested."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Stopped` if a stop was requested."""
        if self._event.is_set():
            raise Stopped(self.reason or "stop requested")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking at once on a stop; True if stopped."""
        return self._event.wait(seconds)


def _cancel(conn: Connection) -> None:
    """Send ``conn`` a cancel request (the thread :meth:`StopToken.request` starts)."""
    try:
        conn.cancel()
    except psycopg2.Error as exc:  # the server may already be gone: the stop holds
        log.warning("cancel_failed", extra={"error": str(exc)})


@dataclass
class RowError:
    """A bad input row: 1-based physical ``line``, the ``column`` (header name) and why."""

    line: int
    reason: str
    column: str | None = None
    value: str | None = None


@dataclass
class ChunkResult:
    """What one chunk did: ``rows`` units done, its row errors, the cursor after it."""

    rows: int
    cursor: Mapping[str, Any]
    exhausted: bool
    errors: list[RowError] = field(default_factory=list)
    conflicts: int = 0


class Work(Protocol):
    """A task type's run or rollback, driven chunk by chunk by :class:`Engine`."""

    def open(self, cursor: Mapping[str, Any] | None) -> int | None:
        """Prepare to continue after ``cursor`` (None: from the start); return the total.

        Reads and checks everything it can before any write; raises :class:`TaskFailed`
        for input that cannot be processed at all.
        """
        ...

    def chunk(self, cur: Cursor, limit: int) -> ChunkResult:
        """Do up to ``limit`` units inside the open transaction ``cur`` belongs to."""
        ...

    def close(self) -> None:
        """Release what :meth:`open` took (threads, iterators); safe to call twice."""
        ...

    def total(self) -> int | None:
        """The total, once known, when :meth:`open` could not give it at once (a count
        still running beside the chunks); None until then."""
        ...

    @property
    def max_row_errors(self) -> int | None:
        """The task fails once its row errors exceed this (None: no limit)."""
        ...


TaskDefinition = TaskRecord
"""What a runner is told about its task: the record's identity (:class:`TaskRecord`)."""

class Engine:
    """Runs one :class:`Work` to completion or until stopped, fenced or failed.

    ``conn`` is the data connection (explicit transactions), dedicated to this engine.
    """

    def __init__(
        self,
        conn: Connection,
        task_uid: uuid.UUID,
        mode: Mode,
        *,
        stop: StopToken,
        holder: str,
        settings: RunnerSettings | None = None,
    ) -> None:
        self.conn = conn
        self.uid = task_uid
        self.mode = mode
        self.stop = stop
        self.holder = holder
        self.settings = settings or RunnerSettings()
        self.cols = taskrecord.COLUMNS[mode]
        self.epoch = 0
        self.chunk_size = self.settings.chunk_initial_rows
        self._rates = RateWindow()
        self._run_rows = 0  # rows this run committed so far
        self._log = logging.LoggerAdapter(log, {"task": str(task_uid), "mode": mode})

    # -- lease -----------------------------------------------------------------------------
    def acquire(self) -> dict[str, Any]:
        """Take the lease (bump the epoch) and return the task record as it now stands.

        Waits for a chunk another runner has open on this task, then fences it out.
        """
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            record = taskrecord.acquire(cur, self.uid, self.mode, self.holder)
            why = taskrecord.why_no_lease(cur, self.uid) if record is None else None
        self.conn.commit()
        if record is None:
            if why is None:
                raise TaskFailed(f"task {self.uid} is not registered")
            rollback_status, hold = why
            if hold is not None and rollback_status == "none":
                raise Stopped(f"the task is held ({hold}); it does not start")
            raise Fenced(f"task {self.uid} is being rolled back; its run will not continue")
        self.epoch = int(record["epoch"])
        self._log.info("lease_acquired", extra={"epoch": self.epoch, "holder": self.holder})
        return record

    # -- the chunk loop -------------------------------------------------------------------
    def run(self, work: Work, record: Mapping[str, Any]) -> None:
        """Drive ``work`` chunk by chunk from the record's checkpoint to the end.

        Raises :class:`Stopped`, :class:`Fenced` or :class:`TaskFailed`; returns when the
        work is complete and its completion committed.
        """
        c = self.cols
        if record[c.status] == "succeeded":
            self._log.info("already_complete")
            return
        if record[c.status] == "failed":
            raise TaskFailed(record.get("message") or "the task failed earlier")
        self.stop.check()
        try:
            self._run(work, record)
        finally:
            work.close()
            self._log.debug("work_closed")

    def _run(self, work: Work, record: Mapping[str, Any]) -> None:
        c = self.cols
        total = work.open(record[c.cursor])
        total_known = record[c.total] is not None
        if total is not None and not total_known:
            self._set_total(total)
            total_known = True
        rows_this_run = 0
        self._rates, self._run_rows = RateWindow(), 0
        limit_per_second: float | None = record.get("rate_limit")
        # The pace is kept from an origin (a time and the rows done by then) that moves
        # whenever the limit changes (spec.rateLimit, live): a new limit neither owes the
        # rows the old one was ahead by nor makes up those it was behind.
        paced_since, paced_rows = time.monotonic(), 0
        while True:
            self.stop.check()
            chunk_started = time.monotonic()
            result, limit, size = self._one_chunk(work, self.chunk_size, record)
            now = time.monotonic()
            if limit != limit_per_second:
                self._log.info("rate_limit_changed",
                               extra={"from": limit_per_second, "to": limit})
                limit_per_second = limit
                paced_since, paced_rows = chunk_started, rows_this_run
                self._rates.restart()
            rows_this_run += result.rows
            if not total_known and (total := work.total()) is not None:
                self._set_total(total)
                total_known = True
            self._adapt(now - chunk_started, size, result.rows)
            self._rates.committed(now, rows_this_run)
            self._run_rows = rows_this_run
            if result.exhausted:
                self._log.info("work_complete", extra={"rows": rows_this_run})
                return
            if limit_per_second:
                due = paced_since + (rows_this_run - paced_rows) / limit_per_second
                if due > now and self.stop.wait(due - now):
                    self.stop.check()

    def _one_chunk(
        self, work: Work, size: int, record: Mapping[str, Any]
    ) -> tuple[ChunkResult, float | None, int]:
        """Lock the record, write one chunk of at most ``size`` rows (fewer under the rate
        limit the lock read: a chunk takes about the target time at that rate), commit:
        ``(result, the rate limit read, the size asked of the work)``."""
        conn = self.conn
        try:
            with conn.cursor() as cur:
                lock = taskrecord.lock_for_chunk(cur, self.uid, self.mode)
                epoch, rate_limit, row_errors = lock.epoch, lock.rate_limit, lock.row_errors
                done, total, hold = lock.done, lock.total, lock.hold
                if epoch != self.epoch:
                    raise Fenced(f"lease lost: epoch {epoch} is newer than this runner's "
                                 f"{self.epoch}")
                if hold is not None and self.mode == "run":
                    self.stop.request(f"the task was held ({hold})", cancel=False)
                    raise Stopped(self.stop.reason or "held")
                if rate_limit:
                    size = max(1, min(size, int(rate_limit * self.settings.chunk_target_seconds)))
                result = work.chunk(cur, size)
                stored = self._store_errors(cur, result.errors, row_errors)
                new_done = done + result.rows
                new_errors = row_errors + len(result.errors)
                eta = None
                rate = self._rates.rate(time.monotonic(), self._run_rows + result.rows)
                if rate and total is not None and rate > 0:
                    eta = max(0.0, (total - new_done) / rate)
                finished = result.exhausted
                if finished:
                    eta = 0.0
                limit = work.max_row_errors
                failure = None
                if limit is not None and new_errors > limit:
                    # The chunk's rows and errors are kept (a rollback undoes them); the
                    # task ends failed in the same transaction.
                    failure = (
                        f"{new_errors} rows are bad, more than the {limit} this task allows "
                        "(maxRowErrors); see the task's row errors, fix the file and start "
                        "again"
                    )
                end_status = "failed" if failure else "succeeded" if finished else None
                # The checkpoint and the chunk's own record, in one round trip.
                seq = taskrecord.checkpoint(
                    cur, self.uid, self.mode, epoch=self.epoch, cursor=result.cursor,
                    done=new_done, row_errors=new_errors, rate=rate, eta=eta,
                    rows=result.rows, chunk_errors=len(result.errors),
                    chunk_started_at=lock.started_at, conflicts=result.conflicts,
                    finished=finished, end_status=end_status, message=failure)
            # The last moment a stop can keep this chunk from being written.
            self.stop.check()
            conn.commit()
        except psycopg2.errors.QueryCanceled:
            conn.rollback()
            self._log.debug("chunk_cancelled")
            if self.stop.is_set():
                raise Stopped(self.stop.reason or "stop requested") from None
            raise
        except BaseException:
            conn.rollback()
            raise
        self._log.debug("chunk_committed", extra={"seq": seq, "rows": result.rows,
                                                  "errors": len(result.errors),
                                                  "stored_errors": stored})
        if failure:
            raise TooManyRowErrors(failure)
        return result, rate_limit, size

    def _store_errors(self, cur: Cursor, errors: list[RowError], already: int) -> int:
        room = max(0, self.settings.max_stored_row_errors - already)
        keep = errors[:room]
        if keep:
            psycopg2.extras.execute_values(
                cur,
                "INSERT INTO longtask.row_errors (task_uid, line, column_name, reason, value) "
                "VALUES %s",
                [(self.uid, e.line, e.column, e.reason,
                  None if e.value is None else e.value[:200]) for e in keep],
            )
        return len(keep)

    def _set_total(self, total: int) -> None:
        with self.conn.cursor() as cur:
            taskrecord.set_total(cur, self.uid, self.mode, total, self.epoch)
        self.conn.commit()

    def _adapt(self, seconds: float, size: int, rows: int) -> None:
        """Scale the next chunk so it takes about the target time (×0.5 … ×2 per step)."""
        s = self.settings
        if rows <= 0 or seconds <= 0:
            return
        factor = min(2.0, max(0.5, s.chunk_target_seconds / seconds))
        self.chunk_size = int(min(s.chunk_max_rows, max(s.chunk_min_rows, size * factor)))

    # -- endings --------------------------------------------------------------------------
    def record_stop(self, reason: str) -> None:
        """Note in the record why this runner stopped (only while it holds the lease)."""
        self._record_end("stopped", reason=reason)

    def record_failure(self, message: str) -> None:
        """Mark the task failed with ``message`` (only while this runner holds the lease)."""
        self._record_end("failed", message=message)

    def _record_end(self, status: str, *, reason: str | None = None,
                    message: str | None = None) -> None:
        for _attempt in range(3):  # a cancel sent during the stop may hit this statement
            try:
                with self.conn.cursor() as cur:
                    taskrecord.end(cur, self.uid, self.mode, epoch=self.epoch,
                                   status=status, reason=reason,
                                   stop_requested_at=self.stop.requested_at, message=message)
                self.conn.commit()
                return
            except psycopg2.errors.QueryCanceled:
                self.conn.rollback()
        self._log.warning("end_not_recorded", extra={"status": status})


def dumps(value: Any) -> str:
    """JSON text for logs and params (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
