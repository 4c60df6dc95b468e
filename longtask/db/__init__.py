"""The database: schema migrations (alembic) and connections (psycopg2).

Two schemas: ``collect`` holds the slice of Atlan Collect the tasks work on; ``longtask``
holds the engine's own tables (task records, checkpoints, row errors, undo journal, file
store, export output). The statements on the task records are :mod:`longtask.taskrecord`'s;
who may run which statements, one database role per component, is :mod:`longtask.db.roles`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg2
import psycopg2._psycopg
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from longtask.errors import LongTaskError

psycopg2.extras.register_uuid()  # type: ignore[no-untyped-call]

log = logging.getLogger("longtask.db")


def _libpq() -> ctypes.CDLL | None:
    """The libpq psycopg2 itself is linked with, or None when its symbols cannot be found.

    A lookup through psycopg2's own extension module finds the very library it loaded
    (its bundled copy in psycopg2-binary), whose ``PGconn`` is the one
    ``connection.pgconn_ptr`` points to.
    """
    try:
        lib = ctypes.CDLL(psycopg2._psycopg.__file__)
        lib.PQgetCancel.argtypes = [ctypes.c_void_p]
        lib.PQgetCancel.restype = ctypes.c_void_p
        lib.PQcancel.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.PQcancel.restype = ctypes.c_int
        lib.PQfreeCancel.argtypes = [ctypes.c_void_p]
        lib.PQfreeCancel.restype = None
    except (OSError, AttributeError, TypeError) as exc:
        log.warning("libpq_not_found", extra={"error": str(exc)})
        return None
    return lib


_PQ = _libpq()
_CANCEL_ERRBUF = 256  # bytes, the size libpq's documentation asks for


class Connection(psycopg2.extensions.connection):
    """A psycopg2 connection whose :meth:`cancel` lets the process's other threads run.

    psycopg2's own ``cancel()`` holds the interpreter lock for the whole cancel request,
    and libpq's ``PQcancel`` opens a connection to the server and waits until the server
    closes it: against a server that accepts TCP and never answers, every thread of the
    process froze. This class calls the same ``PQcancel`` through ctypes, which releases
    the lock, so only the calling thread waits.
    """

    _pgcancel: int | None = None

    def __init__(self, dsn: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(dsn, *args, **kwargs)
        # The cancel key is copied here, on the thread that made the connection; the
        # copy stays valid after close() and is freed with this object.
        if _PQ is not None and self.pgconn_ptr:
            self._pgcancel = _PQ.PQgetCancel(self.pgconn_ptr) or None

    def cancel(self) -> None:
        """Ask the server to cancel this connection's statement in flight; callable from any
        thread, blocking only the caller (until the server closes the cancel connection).

        Raises ``psycopg2.InterfaceError`` once closed, ``psycopg2.OperationalError`` when
        the request could not be sent.
        """
        handle = self._pgcancel
        if handle is None or _PQ is None:
            super().cancel()
            return
        if self.closed:
            raise psycopg2.InterfaceError("connection already closed")
        errbuf = ctypes.create_string_buffer(_CANCEL_ERRBUF)
        if not _PQ.PQcancel(handle, errbuf, _CANCEL_ERRBUF):
            raise psycopg2.OperationalError(errbuf.value.decode("utf-8", "replace").strip())

    def __del__(self) -> None:
        # A thread inside cancel() holds a reference, so no cancel is using the copy.
        handle, self._pgcancel = self._pgcancel, None
        if handle is not None and _PQ is not None:
            _PQ.PQfreeCancel(handle)


def connect(url: str, *, application_name: str = "longtask",
            statement_timeout: float | None = None,
            options: Mapping[str, str] | None = None) -> Connection:
    """Open a :class:`Connection` in explicit-transaction mode (psycopg2's default), UTC
    session zone, UTF-8 client encoding (the runner hands ``COPY`` UTF-8 bytes); with
    ``statement_timeout`` (seconds) the server cancels any statement that runs longer.

    ``options`` are libpq connection parameters (e.g. ``connect_timeout``,
    ``keepalives_idle``), each applied unless ``url`` sets the same parameter: a value
    written in the URL wins. Either wins over libpq's environment (``PGCONNECT_TIMEOUT``).

    Raises ``psycopg2.OperationalError`` when the server cannot be reached (within
    ``connect_timeout`` seconds per address tried, if set), ``psycopg2.ProgrammingError``
    for a malformed URL.
    """
    given = psycopg2.extensions.parse_dsn(url)
    params: dict[str, Any] = {k: v for k, v in (options or {}).items() if k not in given}
    params.update(application_name=application_name, client_encoding="UTF8")
    conn: Connection = psycopg2.connect(url, connection_factory=Connection, **params)
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        if statement_timeout is not None:
            cur.execute("SELECT set_config('statement_timeout', %s, false)",
                        (_milliseconds(statement_timeout),))
    conn.commit()
    return conn


def _milliseconds(seconds: float) -> str:
    """A PostgreSQL duration setting of ``seconds``, at least 1 ms (0 would mean none)."""
    return f"{max(1, round(seconds * 1000))}ms"


@contextlib.contextmanager
def statement_timeout(conn: psycopg2.extensions.connection, seconds: float) -> Iterator[None]:
    """Within the block, the server cancels any statement on ``conn`` that runs longer
    than ``seconds`` (``QueryCanceled``); the session's own setting again after it."""
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = %s", (_milliseconds(seconds),))
    try:
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute("RESET statement_timeout")


class DatabaseUnavailable(LongTaskError):
    """The database cannot be reached, or no pooled connection freed up in time."""


class Pool:
    """At most ``size`` connections, handed out one per unit of work and reused: the one
    pool of the API and the operator.

    ``connection()`` waits up to ``wait_seconds`` for a free one, then raises
    :attr:`unavailable` (a :class:`DatabaseUnavailable`; the API answers it with 503); so
    does a connect that fails (within ``connect_timeout`` seconds) and a connection that
    fails while in use, which is discarded. Other ``psycopg2.Error`` pass through.
    """

    unavailable: type[DatabaseUnavailable] = DatabaseUnavailable

    def __init__(self, url: str, size: int, *, application_name: str,
                 connect_timeout: int = 5, wait_seconds: float = 10.0) -> None:
        self._url = url
        self._name = application_name
        self._connect_timeout = connect_timeout
        self._wait = wait_seconds
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[psycopg2.extensions.connection] = []
        self._lock = threading.Lock()

    def _open(self) -> psycopg2.extensions.connection:
        try:
            conn = psycopg2.connect(self._url, application_name=self._name,
                                    connect_timeout=self._connect_timeout)
        except psycopg2.OperationalError as exc:
            raise self.unavailable(f"database unreachable: {first_line(exc)}") from None
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        return conn

    @contextlib.contextmanager
    def connection(self, *, autocommit: bool = True,
                   readonly: bool = False) -> Iterator[psycopg2.extensions.connection]:
        """A connection for one unit of work, in autocommit mode unless asked otherwise,
        read-only when asked; rolled back when given back in a transaction."""
        if not self._slots.acquire(timeout=self._wait):
            raise self.unavailable("no database connection became free in time")
        conn: psycopg2.extensions.connection | None = None
        broken = False
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self._open()
            conn.autocommit = autocommit
            if readonly:
                conn.readonly = True
            try:
                yield conn
            except psycopg2.OperationalError as exc:
                broken = True
                raise self.unavailable(f"database failed: {first_line(exc)}") from exc
        finally:
            if conn is not None:
                self._give_back(conn, broken)
            self._slots.release()

    def _give_back(self, conn: psycopg2.extensions.connection, broken: bool) -> None:
        """Keep ``conn`` for reuse (rolled back, explicit-transaction mode) or close it."""
        if not broken and not conn.closed:
            try:
                if not conn.autocommit:
                    conn.rollback()
                if conn.readonly is not None:
                    conn.readonly = None  # the server's default again, for the next user
                conn.autocommit = False
            except psycopg2.Error:
                broken = True
            if not broken:
                with self._lock:
                    self._idle.append(conn)
                return
        with contextlib.suppress(psycopg2.Error):
            conn.close()

    def ping(self) -> None:
        """``SELECT 1``; :attr:`unavailable` when it fails."""
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(psycopg2.Error):
                conn.close()


def first_line(exc: BaseException) -> str:
    """The first line of a driver message (libpq's later lines may echo connection details)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
