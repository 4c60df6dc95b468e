"""Leader election on a ``coordination.k8s.io/v1`` Lease: one active operator among replicas.

Every replica is a candidate for one Lease (``LONGTASK_OPERATOR_LEASE_NAME`` in
``LONGTASK_OPERATOR_LEASE_NAMESPACE``). The election is the Kubernetes client's
(:mod:`kubernetes.leaderelection` with its ``LeaseLock``): a standby reads the Lease every
retry period and takes it once the holder's record has not changed for a lease duration,
as measured on its own clock; every write is a replace at the resourceVersion it read, so
two standbys never both take it. This module bounds that election and ties kopf to it:

- kopf runs only in the holder: a standby serves its liveness probe and waits.
- A holder whose last successful renewal was *sent* more than the renew deadline ago exits
  within a tenth of a second (status 1), whatever the election's thread is doing. A
  standby takes the Lease only a lease duration after it *saw* that renewal, so the old
  holder has stopped acting by then, with the lease duration minus the renew deadline to
  spare, unless the whole process was frozen for longer than that (no fencing; see
  operator/README.md).
- Each Lease request has a timeout of a third of the renew deadline and no urllib3
  retries; a transport error counts as one failed attempt, never ends the election.
- On SIGTERM the holder stops kopf (its handlers finish), then gives the Lease up (no
  holder), so a standby takes it at its next read instead of a lease duration later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Coroutine
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock
from longtask.operator.settings import OperatorSettings

log = logging.getLogger("longtask.operator.leader")
# The process's exit status when it loses the Lease (or its election breaks): the kubelet
# restarts it, and it comes back as a standby.
EXIT_LEASE_LOST = 1
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WATCHDOG_INTERVAL = 0.1  # seconds between the holder's checks of its last renewal

T = TypeVar("T")
Operate = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def _holder(body: Any) -> str | None:
    spec = getattr(body, "spec", None)
    holder: str | None = getattr(spec, "holder_identity", None)
    return holder


class LeaseApi:
    """The three Lease calls ``LeaseLock`` makes (it takes this as its ``api_instance``),
    bounded, and what they tell the candidate.

    Each call gets ``timeout`` seconds; a transport error (refused, reset, timed out) is
    raised as ``ApiException(status=0)``, which ``LeaseLock`` reports as a failed attempt.
    ``contact`` is the ``time.monotonic()`` of the server's last answer (any status);
    ``renewed`` the monotonic time at which the last successful write naming ``identity``
    as the holder was sent (None before the first). After :meth:`release` every write is
    refused with status 0.
    """

    def __init__(self, api_client: client.ApiClient, identity: str, timeout: float) -> None:
        self._api = client.CoordinationV1Api(api_client)
        self.identity = identity
        self.timeout = timeout
        self.contact: float | None = None
        self.renewed: float | None = None
        self.released = False
        self._writing = threading.Lock()

    def _call(self, method: Callable[..., T], *args: Any) -> T:
        try:
            result = method(*args, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status:
                self.contact = time.monotonic()
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiException(status=0, reason=f"{type(exc).__name__}: {exc}") from exc
        self.contact = time.monotonic()
        return result

    def _write(self, method: Callable[..., T], body: client.V1Lease, *args: Any) -> T:
        with self._writing:
            if self.released:
                raise ApiException(status=0, reason="the Lease was given up: no more writes")
            sent = time.monotonic()
            try:
                result = self._call(method, *args)
            except ApiException as exc:
                if self.renewed is not None:
                    log.warning("lease_renewal_failed",
                                extra={"status": exc.status, "reason": str(exc.reason)[:300]})
                raise
            if _holder(body) == self.identity:
                self.renewed = sent
            return result

    def read_namespaced_lease(self, name: str, namespace: str) -> client.V1Lease:
        """``GET`` the Lease; ``ApiException`` on any failure."""
        return self._call(self._api.read_namespaced_lease, name, namespace)

    def create_namespaced_lease(self, namespace: str, body: client.V1Lease) -> client.V1Lease:
        """``POST`` the Lease; ``ApiException`` on any failure (409 when it exists)."""
        return self._write(self._api.create_namespaced_lease, body, namespace, body)

    def replace_namespaced_lease(self, name: str, namespace: str,
                                 body: client.V1Lease) -> client.V1Lease:
        """``PUT`` the Lease at ``body``'s resourceVersion; ``ApiException`` on any failure
        (409 when someone wrote it since it was read)."""
        return self._write(self._api.replace_namespaced_lease, body, name, namespace, body)

    def release(self, name: str, namespace: str) -> bool:
        """Give the Lease up if ``identity`` holds it: no holder and a 1 s duration (what
        client-go writes on release), so a standby takes it at its next read. Every later
        write through this object is refused. True when given up; False when another
        candidate holds it or the server could not be reached."""
        with self._writing:
            self.released = True
            try:
                lease = self._call(self._api.read_namespaced_lease, name, namespace)
                if lease.spec is None or lease.spec.holder_identity != self.identity:
                    return False
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self._call(self._api.replace_namespaced_lease, name, namespace, lease)
            except ApiException as exc:
                log.warning("lease_release_failed",
                            extra={"status": exc.status, "reason": str(exc.reason)[:300]})
                return False
        return True


class _StopRequest:
    """SIGTERM/SIGINT before kopf takes the signals over (it does as it starts, in the main
    thread): remembered, to be handed on to kopf once it is ready."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum)


class Candidate:
    """This process's part in the election for the operator's Lease.

    :meth:`run` blocks until the process should exit. Durations are whole seconds from
    ``settings`` (``lease_duration_seconds``, ``renew_deadline_seconds``,
    ``retry_period_seconds``). ``RuntimeError`` when the Lease's namespace is not given
    and the process is not in a pod; ``ValueError`` for a liveness endpoint that is not
    ``http://host:port/path``.
    """

    def __init__(self, settings: OperatorSettings) -> None:
        config.load_config()  # type: ignore[no-untyped-call]  # in-cluster, else KUBECONFIG
        self.name = settings.lease_name
        self.namespace = lease_namespace(settings)
        self.identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:12]}"
        self.lease_duration = settings.lease_duration_seconds
        self.renew_deadline = settings.renew_deadline_seconds
        self.retry_period = settings.retry_period_seconds
        self.probe = _probe_address(settings.liveness_endpoint) if settings.liveness_endpoint \
            else None
        configuration = client.Configuration.get_default_copy()
        configuration.retries = False  # one attempt per request, bounded by the timeout
        api_client = client.ApiClient(configuration)
        api_client.user_agent = "longtask-operator-leader-election"
        self.api = LeaseApi(api_client, self.identity, timeout=self.renew_deadline / 3)
        self.leading = threading.Event()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(alive, what the probe shows): alive while the server answered a Lease request
        within the last lease duration, in a standby as in the holder."""
        contact = self.api.contact
        age = None if contact is None else time.monotonic() - contact
        alive = age is not None and age <= self.lease_duration
        return alive, {"identity": self.identity, "leader": self.leading.is_set(),
                       "lease": f"{self.namespace}/{self.name}",
                       "lastContactSeconds": None if age is None else round(age, 2)}

    def run(self, operate: Operate) -> None:
        """Serve the probe, stand for election, and once holding the Lease run
        ``operate(ready)`` (kopf, which sets ``ready`` once started) in an asyncio loop until
        it returns; kopf stops on SIGTERM/SIGINT, also one that came while it started. Then
        give the Lease up and return. Returns at once on SIGTERM/SIGINT in a standby. Exits
        the process (status 1) when the Lease is lost; raises what ``operate`` raises."""
        stop = _StopRequest()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        if self.probe is not None:
            self._serve_probe(*self.probe)
        where = {"lease": self.name, "namespace": self.namespace, "identity": self.identity}
        log.info("lease_candidate", extra={
            **where, "leaseDurationSeconds": self.lease_duration,
            "renewDeadlineSeconds": self.renew_deadline,
            "retryPeriodSeconds": self.retry_period})
        lock = LeaseLock(self.name, self.namespace, self.identity)  # type: ignore[no-untyped-call]
        lock.api_instance = self.api  # type: ignore[assignment]  # the three calls it makes
        election = leaderelection.LeaderElection(electionconfig.Config(  # type: ignore[no-untyped-call]
            lock, self.lease_duration, self.renew_deadline, self.retry_period,
            onstarted_leading=self._started_leading,
            onstopped_leading=lambda: self._end("renewals failed for the renew deadline")))
        threading.Thread(target=self._elect, args=(election,), name="lease-election",
                         daemon=True).start()
        threading.Thread(target=self._watch_renewals, name="lease-watchdog",
                         daemon=True).start()
        while not self.leading.wait(0.2):
            if stop.signal is not None:
                log.info("standby_stopped", extra={**where, "signal": stop.signal.name})
                return
        try:
            if stop.signal is None:
                asyncio.run(self._operate(operate, stop))
        finally:
            given_up = self.api.release(self.name, self.namespace)
            log.info("lease_released" if given_up else "lease_not_released", extra=where)

    async def _operate(self, operate: Operate, stop: _StopRequest) -> None:
        ready = asyncio.Event()
        running = asyncio.ensure_future(operate(ready))
        readied = asyncio.ensure_future(ready.wait())
        await asyncio.wait({running, readied}, return_when=asyncio.FIRST_COMPLETED)
        readied.cancel()
        if stop.signal is not None and not running.done():
            # It came before kopf handled signals itself: kopf handles it now.
            os.kill(os.getpid(), stop.signal)
        await running

    def _started_leading(self) -> None:
        log.info("lease_acquired", extra={"lease": self.name, "namespace": self.namespace,
                                          "identity": self.identity})
        self.leading.set()

    def _elect(self, election: leaderelection.LeaderElection) -> None:
        try:
            election.run()  # type: ignore[no-untyped-call]  # returns only after onstopped_leading
        except Exception:
            log.exception("lease_election_failed")
        self._end("the election stopped")

    def _watch_renewals(self) -> None:
        while not self.api.released:
            time.sleep(WATCHDOG_INTERVAL)
            renewed = self.api.renewed
            if renewed is not None and time.monotonic() - renewed > self.renew_deadline:
                self._end(f"no renewal for {time.monotonic() - renewed:.1f}s")

    def _end(self, reason: str) -> None:
        """Exit now: a holder must stop acting before a standby may take the Lease."""
        if self.api.released:
            return  # given up on purpose: the main thread is on its way out
        event = "lease_lost" if self.api.renewed is not None else "lease_election_failed"
        log.error(event, extra={"lease": self.name, "namespace": self.namespace,
                                "identity": self.identity, "reason": reason})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_LEASE_LOST)

    def _serve_probe(self, host: str, port: int, path: str) -> None:
        server = _ProbeServer((host, port), path, self.health)
        threading.Thread(target=server.serve_forever, name="liveness", daemon=True).start()


class _ProbeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], path: str,
                 health: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        super().__init__(address, _ProbeHandler)
        self.probe_path = path
        self.health = health


class _ProbeHandler(BaseHTTPRequestHandler):
    """``GET <path>``: 200 and the candidate's state as JSON while alive, else 503."""

    server: _ProbeServer

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path != self.server.probe_path:
            self.send_error(404)
            return
        alive, state = self.server.health()
        body = json.dumps(state).encode()
        self.send_response(200 if alive else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the kubelet probes every few seconds."""


def _probe_address(endpoint: str) -> tuple[str, int, str]:
    """(host, port, path) of ``http://host:port/path``; ``ValueError`` otherwise."""
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme != "http" or parts.port is None:
        raise ValueError(f"liveness endpoint {endpoint!r} is not http://host:port/path")
    return parts.hostname or "0.0.0.0", parts.port, parts.path or "/"


def lease_namespace(settings: OperatorSettings) -> str:
    """``settings.lease_namespace``, else the pod's own namespace (its service account's);
    ``RuntimeError`` when neither is known (a process outside a pod)."""
    if settings.lease_namespace:
        return settings.lease_namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        raise RuntimeError(
            "the Lease's namespace is unknown outside a pod: set "
            "LONGTASK_OPERATOR_LEASE_NAMESPACE, or LONGTASK_OPERATOR_STANDALONE=true for a "
            "process that is sure to be alone") from None


def run_elected(settings: OperatorSettings, operate: Operate) -> None:
    """Run ``operate`` (kopf) in this process only while it holds the operator's Lease.

    See :meth:`Candidate.run`."""
    Candidate(settings).run(operate)
