"""The process kubelet: runs the pods of the local control plane as local processes.

It does what a kubelet (and, here, the scheduler) does, minus containers:

- registers a Ready node and keeps its status and lease fresh;
- binds pending pods to that node through the ``pods/binding`` subresource, with the
  ``system:kube-scheduler`` identity (there is no scheduler);
- runs each container's ``command`` + ``args`` as a process in its own process group, with
  the environment a kubelet builds (``env`` values and ``$(VAR)`` references, ``valueFrom``
  secretKeyRef / configMapKeyRef / fieldRef / resourceFieldRef, ``envFrom``), ``python`` and
  ``python3`` meaning this interpreter; stdout and stderr go to
  ``<root>/pods/<namespace>_<pod>_<uid>/<container>.log``;
- reports pod status: Pending, Running with container statuses, then Succeeded or Failed
  with the real exit code (``128 + n`` for death by signal ``n``) and reason;
- restarts containers as ``restartPolicy`` says (Never, OnFailure, Always), with an
  exponential crash-loop back-off;
- on graceful deletion sends SIGTERM to the process group, waits up to the deletion grace
  period, sends SIGKILL, reports the terminal phase and completes the deletion
  (``gracePeriodSeconds=0``);
- a pod it finds Running with no process (the kubelet restarted) gets its container
  reported as ``ContainerStatusUnknown`` (exit code 137), then the restart policy applies.

Not supported: init containers (the pod fails with reason ``InitContainersUnsupported``),
probes, volumes, ``kubectl logs/exec`` (there is no kubelet server).

Run by :mod:`devcluster.kube`: ``python -m devcluster.kubelet --kubeconfig NODE.kubeconfig
--scheduler-kubeconfig SCHEDULER.kubeconfig --node-name NAME --root-dir DIR``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("devcluster.kubelet")

Json = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready",
                      "PodScheduled")
# Environment passed from the kubelet's own to every container (a container image would
# set these); the rest of a pod's environment comes from its spec only.
PASS_ENV = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV",
            "PYTHONDONTWRITEBYTECODE", "COVERAGE_PROCESS_START")
PYTHON_NAMES = {"python", "python3", f"python3.{sys.version_info.minor}"}
MAX_BACKOFF = 300.0
# Errors of a call that may pass when tried again (the server restarting, a dropped
# connection); ApiException carries the HTTP status when there was an answer.
CALL_ERRORS = (ApiException, OSError, urllib3.exceptions.HTTPError)

_libc: Any = None


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the container when the kubelet thread that started it dies.

    Also unblocks SIGTERM/SIGINT: the kubelet blocks them for ``sigwait`` and a container
    would otherwise inherit them blocked.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    if _libc is not None:
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def now_iso() -> str:
    """The current UTC time as RFC 3339 with seconds, as the API stores it."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _raw(response: Any) -> Json:
    data: Json = json.loads(response.data)
    return data


def _done(response: Any) -> None:
    """Read the body of a ``_preload_content=False`` response: the connection goes back to
    the pool instead of being dropped while the server still writes."""
    _ = response.data


class ContainerConfigError(Exception):
    """A container's environment cannot be built yet (missing secret, config map or key)."""


# --------------------------------------------------------------------------- environment


def expand(value: str, env: Mapping[str, str]) -> str:
    """Expand ``$(NAME)`` references from ``env`` the way a kubelet does.

    ``$$`` is a literal ``$``; a reference to an undefined name is left as written.
    """
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "$" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2:end]
                    out.append(env[name] if name in env else value[i:end + 1])
                    i = end + 1
                    continue
        out.append(value[i])
        i += 1
    return "".join(out)


def _field_value(pod: Json, path: str) -> str:
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP") or "127.0.0.1",
        "status.podIP": status.get("podIP") or "127.0.0.1",
        "status.hostIPs": status.get("hostIP") or "127.0.0.1",
        "status.podIPs": status.get("podIP") or "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    for prefix, source in (("metadata.labels", "labels"),
                           ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(meta.get(source, {}).get(path[len(prefix) + 2:-2], ""))
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _resource_value(container: Json, ref: Json) -> str:
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    resources = container.get("resources", {})
    value = resources.get(kind, {}).get(name) or resources.get("limits", {}).get(name)
    if value is not None:
        return str(value)
    if name == "cpu":
        return str(os.cpu_count() or 1)
    if name == "memory":
        return str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return "0"


class EnvResolver:
    """Builds a container's environment; reads secrets and config maps through ``core``."""

    def __init__(self, core: Any, base: Mapping[str, str]) -> None:
        self.core = core
        self.base = dict(base)

    def _data(self, kind: str, namespace: str, name: str, optional: bool) -> dict[str, str]:
        try:
            if kind == "secret":
                obj = _raw(self.core.read_namespaced_secret(name, namespace,
                                                            _preload_content=False))
                return {k: base64.b64decode(v).decode("utf-8", errors="replace")
                        for k, v in (obj.get("data") or {}).items()}
            obj = _raw(self.core.read_namespaced_config_map(name, namespace,
                                                            _preload_content=False))
            return dict(obj.get("data") or {})
        except ApiException as err:
            if err.status == 404 and optional:
                return {}
            raise ContainerConfigError(
                f'{kind} "{name}" not found' if err.status == 404
                else f'cannot read {kind} "{name}": {err.status} {err.reason}') from err
        except (OSError, urllib3.exceptions.HTTPError) as err:
            raise ContainerConfigError(f'cannot read {kind} "{name}": {err}') from err

    def resolve(self, pod: Json, container: Json) -> dict[str, str]:
        """The environment of ``container``; raises :class:`ContainerConfigError`."""
        namespace = pod["metadata"]["namespace"]
        env = dict(self.base)
        env["HOSTNAME"] = pod["metadata"]["name"]
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix") or ""
            for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
                ref = source.get(key)
                if ref:
                    data = self._data(kind, namespace, ref["name"], bool(ref.get("optional")))
                    env.update({prefix + k: v for k, v in data.items()})
        for var in container.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(var.get("value") or "", env)
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                env[name] = _field_value(pod, source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                env[name] = _resource_value(container, source["resourceFieldRef"])
            else:
                kind, key = (("secret", "secretKeyRef") if "secretKeyRef" in source
                             else ("configmap", "configMapKeyRef"))
                ref = source[key]
                optional = bool(ref.get("optional"))
                data = self._data(kind, namespace, ref["name"], optional)
                if ref["key"] in data:
                    env[name] = data[ref["key"]]
                elif not optional:
                    raise ContainerConfigError(
                        f'couldn\'t find key {ref["key"]} in {kind} '
                        f'{namespace}/{ref["name"]}')
        return env


# --------------------------------------------------------------------------- containers


@dataclass
class Container:
    """One container of a pod: its process and the status the API should see."""

    spec: Json
    restart_count: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    state: Json = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Json = field(default_factory=dict)
    restart_at: float | None = None  # monotonic time of the next start, when one is due
    env: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def terminated(self) -> Json | None:
        value: Json | None = self.state.get("terminated")
        return value

    def status(self) -> Json:
        running = "running" in self.state
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"process://{self.proc.pid}" if self.proc else "",
            "ready": running,
            "started": running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


def _exit_state(code: int, started_at: str, container_id: str) -> Json:
    if code < 0:  # killed by a signal, as a container runtime reports it
        code = 128 - code
    return {"terminated": {
        "exitCode": code,
        "reason": "Completed" if code == 0 else "Error",
        "startedAt": started_at or now_iso(),
        "finishedAt": now_iso(),
        "containerID": container_id,
    }}


class PodWorker(threading.Thread):
    """Runs one pod to its end; told about new versions of the pod through :meth:`update`."""

    def __init__(self, kubelet: Kubelet, pod: Json) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.kubelet = kubelet
        self.pod = pod
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.removed = threading.Event()
        self.finished = False
        self.start_time = pod.get("status", {}).get("startTime") or now_iso()
        self.transitions: dict[str, tuple[str, str]] = {}
        self.containers = [Container(spec) for spec in pod["spec"].get("containers", [])]
        self.log_dir = kubelet.root / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        self._adopt(pod.get("status", {}))

    # -- inputs from the watch
    def update(self, pod: Json) -> None:
        """A newer version of this pod was seen."""
        with self.lock:
            self.pod = pod
        self.wake.set()

    def remove(self) -> None:
        """The pod is gone from the API: stop its processes without reporting."""
        self.removed.set()
        self.wake.set()

    @property
    def deleting(self) -> bool:
        with self.lock:
            return bool(self.pod["metadata"].get("deletionTimestamp"))

    @property
    def grace_seconds(self) -> float:
        with self.lock:
            meta, spec = self.pod["metadata"], self.pod["spec"]
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = spec.get("terminationGracePeriodSeconds", 30)
            return float(grace)

    @property
    def restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy") or "Always")

    # -- the pod's life
    def _adopt(self, status: Json) -> None:
        """Take over statuses from a previous kubelet run: their processes are gone."""
        previous = {s["name"]: s for s in status.get("containerStatuses") or []}
        for c in self.containers:
            old = previous.get(c.name)
            if not old:
                continue
            c.restart_count = int(old.get("restartCount", 0))
            c.last_state = old.get("lastState") or {}
            state = old.get("state") or {}
            if "terminated" in state:
                c.state = {"terminated": state["terminated"]}
            elif "running" in state:
                c.state = {"terminated": {
                    "exitCode": 137, "reason": "ContainerStatusUnknown",
                    "message": "The container could not be located when the pod was "
                               "terminated",
                    "startedAt": state["running"].get("startedAt") or now_iso(),
                    "finishedAt": now_iso()}}
            else:
                continue
            if self._should_restart(c):
                c.restart_at = time.monotonic()

    def _should_restart(self, c: Container) -> bool:
        term = c.terminated
        if term is None:
            return False
        policy = self.restart_policy
        return policy == "Always" or (policy == "OnFailure" and term.get("exitCode") != 0)

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s/%s: worker failed; stopping its processes",
                          self.namespace, self.pod_name)
            self._kill_all(signal.SIGKILL)
            raise
        finally:
            with self.lock:
                self.finished = True
            if self.deleting and not self.removed.is_set():
                self._complete_deletion()

    def _run(self) -> None:
        if self.pod["spec"].get("initContainers"):
            self._report("Failed", reason="InitContainersUnsupported",
                         message="the process kubelet does not run init containers")
            return
        if not self._resolve_env(self.containers):
            return
        for c in self.containers:
            if c.terminated is None:  # not one a previous kubelet saw end
                self._start(c)
        self._report(self._phase())
        while True:
            if self.removed.is_set():
                self._stop_processes(grace=2.0)
                return
            if self.deleting:
                self._stop_processes(grace=self.grace_seconds)
                self._report(self._terminal_phase())
                self._complete_deletion()
                return
            changed = self._reap()
            changed = self._restart_due() or changed
            if all(c.terminated is not None and c.restart_at is None
                   for c in self.containers):
                self._report(self._terminal_phase())
                return
            if changed:
                self._report(self._phase())
            self.wake.wait(0.1)
            self.wake.clear()

    def _resolve_env(self, containers: Sequence[Container]) -> bool:
        """Build each container's environment, retrying while a reference is missing.

        False when the pod was deleted or removed meanwhile (its end already reported).
        """
        delay = 0.5
        while True:
            try:
                for c in containers:
                    c.env = self.kubelet.env.resolve(self.pod, c.spec)
                return True
            except ContainerConfigError as err:
                log.info("pod %s/%s: %s", self.namespace, self.pod_name, err)
                for c in containers:
                    if c.env is None and c.terminated is None:
                        c.state = {"waiting": {"reason": "CreateContainerConfigError",
                                               "message": str(err)}}
                self._report("Pending")
            if self.removed.is_set():
                return False
            if self.deleting:
                self._report("Failed")
                self._complete_deletion()
                return False
            self.wake.wait(delay)
            self.wake.clear()
            delay = min(delay * 2, 5.0)

    def _argv(self, c: Container) -> list[str]:
        env = c.env or {}
        command = list(c.spec.get("command") or [])
        if not command:
            command = list(self.kubelet.image_commands.get(c.spec.get("image", ""), []))
        if not command:
            raise FileNotFoundError(
                f"container {c.name} sets no command and image {c.spec.get('image')!r} has "
                "none configured: the process kubelet runs commands, not images")
        argv = [expand(a, env) for a in command + list(c.spec.get("args") or [])]
        if Path(argv[0]).name in PYTHON_NAMES:
            argv[0] = sys.executable
        return argv

    def _start(self, c: Container) -> None:
        global _libc
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        workdir = c.spec.get("workingDir")
        cwd = Path(workdir) if workdir and Path(workdir).is_dir() else self.log_dir
        c.started_at = now_iso()
        c.restart_at = None
        try:
            argv = self._argv(c)
            with (self.log_dir / f"{c.name}.log").open("ab") as out:
                c.proc = subprocess.Popen(
                    argv, env=c.env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=_die_with_parent)
        except OSError as err:
            log.warning("pod %s/%s: container %s cannot start: %s", self.namespace,
                        self.pod_name, c.name, err)
            c.proc = None
            c.state = {"terminated": {
                "exitCode": 128, "reason": "StartError", "message": str(err),
                "startedAt": c.started_at, "finishedAt": now_iso()}}
            self._schedule_restart(c)
            return
        log.info("pod %s/%s: container %s started, pid %d: %s", self.namespace,
                 self.pod_name, c.name, c.proc.pid, argv)
        c.state = {"running": {"startedAt": c.started_at}}

    def _reap(self) -> bool:
        changed = False
        for c in self.containers:
            if c.proc is None or "running" not in c.state:
                continue
            code = c.proc.poll()
            if code is None:
                continue
            # Like a container whose PID 1 exits: whatever it left behind goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.proc.pid, signal.SIGKILL)
            c.state = _exit_state(code, c.started_at, f"process://{c.proc.pid}")
            log.info("pod %s/%s: container %s exited with %s", self.namespace,
                     self.pod_name, c.name, c.state["terminated"]["exitCode"])
            self._schedule_restart(c)
            changed = True
        return changed

    def _schedule_restart(self, c: Container) -> None:
        if not self._should_restart(c):
            return
        delay = min(self.kubelet.restart_backoff * (2 ** c.restart_count), MAX_BACKOFF)
        c.restart_at = time.monotonic() + delay

    def _restart_due(self) -> bool:
        changed = False
        for c in self.containers:
            if c.restart_at is None:
                continue
            if time.monotonic() < c.restart_at:
                if "waiting" not in c.state:
                    c.last_state = {"terminated": c.terminated} if c.terminated else {}
                    c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": (
                        f"back-off restarting failed container {c.name}")}}
                    changed = True
                continue
            if "waiting" not in c.state:
                c.last_state = {"terminated": c.terminated} if c.terminated else {}
            c.restart_count += 1
            self._start(c)
            changed = True
        return changed

    def _kill_all(self, sig: signal.Signals) -> None:
        for c in self.containers:
            if c.proc is not None and c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.proc.pid, sig)

    def _stop_processes(self, grace: float) -> None:
        """SIGTERM every running container's group, SIGKILL after ``grace`` seconds."""
        running = [c for c in self.containers if c.proc is not None and "running" in c.state]
        for c in running:
            log.info("pod %s/%s: SIGTERM to container %s (grace %.0fs)", self.namespace,
                     self.pod_name, c.name, grace)
        self._kill_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(c.proc is not None and c.proc.poll() is None for c in running):
            if time.monotonic() >= deadline:
                log.info("pod %s/%s: grace period over, SIGKILL", self.namespace,
                         self.pod_name)
                self._kill_all(signal.SIGKILL)
                break
            time.sleep(0.05)
        for c in running:
            assert c.proc is not None
            c.proc.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.proc.pid, signal.SIGKILL)
            c.state = _exit_state(int(c.proc.returncode), c.started_at,
                                  f"process://{c.proc.pid}")
        for c in self.containers:
            c.restart_at = None

    def _phase(self) -> str:
        if any("running" in c.state for c in self.containers):
            return "Running"
        if any(c.restart_count > 0 or c.terminated is not None for c in self.containers):
            return "Running"
        return "Pending"

    def _terminal_phase(self) -> str:
        ok = all(c.terminated is not None and c.terminated.get("exitCode") == 0
                 for c in self.containers)
        return "Succeeded" if ok else "Failed"

    # -- reporting
    def _condition(self, kind: str, ok: bool, reason: str = "") -> Json:
        status = "True" if ok else "False"
        previous = self.transitions.get(kind)
        if previous is None or previous[0] != status:
            self.transitions[kind] = (status, now_iso())
        cond: Json = {"type": kind, "status": status,
                      "lastTransitionTime": self.transitions[kind][1], "lastProbeTime": None}
        if reason:
            cond["reason"] = reason
        return cond

    def _report(self, phase: str, *, reason: str = "", message: str = "") -> None:
        ready = phase == "Running" and all("running" in c.state for c in self.containers)
        done_reason = "PodCompleted" if phase in TERMINAL else ""
        conditions = [
            self._condition("PodReadyToStartContainers", phase != "Pending" or any(
                c.env is not None for c in self.containers)),
            self._condition("Initialized", True),
            self._condition("ContainersReady", ready, done_reason),
            self._condition("Ready", ready, done_reason),
            self._condition("PodScheduled", True),
        ]
        with self.lock:
            others = [c for c in self.pod.get("status", {}).get("conditions") or []
                      if c.get("type") not in KUBELET_CONDITIONS]
        status: Json = {
            "phase": phase,
            "conditions": conditions + others,
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "containerStatuses": [c.status() for c in self.containers],
            "reason": reason or None,
            "message": message or None,
        }
        for attempt in range(8):  # a lost terminal status would leave the pod Running
            try:
                _done(self.kubelet.core.patch_namespaced_pod_status(
                    self.pod_name, self.namespace, {"status": status},
                    _content_type="application/merge-patch+json", _preload_content=False))
                return
            except CALL_ERRORS as err:
                if isinstance(err, ApiException) and err.status == 404:
                    return
                log.warning("pod %s/%s: status update failed (attempt %d): %s",
                            self.namespace, self.pod_name, attempt + 1, err)
            if self.removed.wait(min(0.25 * 2 ** attempt, 5.0)):
                return

    def _complete_deletion(self) -> None:
        self.kubelet.delete_now(self.namespace, self.pod_name, self.uid)


# --------------------------------------------------------------------------- kubelet


class Kubelet:
    """The node: registration, heartbeats, binding, and one :class:`PodWorker` per pod."""

    def __init__(self, node_api: Any, scheduler_api: Any, node_name: str, root: Path,
                 image_commands: Mapping[str, Sequence[str]], restart_backoff: float,
                 version: str = "v0.0.0-process") -> None:
        # The generated client's annotations demand model objects; this code sends JSON.
        self.core: Any = client.CoreV1Api(node_api)
        self.coordination: Any = client.CoordinationV1Api(node_api)
        self.scheduler: Any = client.CoreV1Api(scheduler_api)
        self.node_name = node_name
        self.root = root
        self.image_commands = dict(image_commands)
        self.restart_backoff = restart_backoff
        self.version = version
        self.stopping = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self.workers_lock = threading.Lock()
        self.deleted: set[str] = set()
        server = urlparse(node_api.configuration.host)
        bindir = str(Path(sys.executable).parent)
        base = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        base.update({
            "PATH": f"{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "KUBERNETES_SERVICE_HOST": server.hostname or "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(server.port or 443),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(server.port or 443),
        })
        self.env = EnvResolver(self.core, base)

    # -- node
    def _node_status(self) -> Json:
        now = now_iso()

        def cond(kind: str, status: str, reason: str, message: str) -> Json:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": self.started}

        cpu = str(os.cpu_count() or 1)
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 1024}Ki"
        resources = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"}
        return {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                cond("Ready", "True", "KubeletReady", "process kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.node_name}],
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": os.uname().release, "osImage": "process kubelet",
                "containerRuntimeVersion": "process://1", "kubeletVersion": self.version,
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        }

    def register(self, timeout: float = 60.0) -> None:
        """Create (or refresh) this node, retrying until the API answers; ``TimeoutError``."""
        self.started = now_iso()
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {
                "kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64"}},
            "status": self._node_status(),
        }
        deadline = time.monotonic() + timeout
        while True:
            try:
                try:
                    _done(self.core.create_node(node, _preload_content=False))
                except ApiException as err:
                    if err.status != 409:
                        raise
                self._heartbeat()
                log.info("node %s registered", self.node_name)
                return
            except CALL_ERRORS as err:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cannot register node {self.node_name}: {err}") from err
                log.info("waiting for the API server: %s", err)
                time.sleep(0.5)

    def _heartbeat(self) -> None:
        _done(self.core.patch_node_status(self.node_name, {"status": self._node_status()},
                                          _content_type="application/merge-patch+json",
                                          _preload_content=False))
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": 40,
                          "renewTime": datetime.datetime.now(datetime.UTC).strftime(
                              "%Y-%m-%dT%H:%M:%S.%fZ")}}
        try:
            _done(self.coordination.patch_namespaced_lease(
                self.node_name, "kube-node-lease", {"spec": lease["spec"]},
                _content_type="application/merge-patch+json", _preload_content=False))
        except ApiException as err:
            if err.status != 404:
                raise
            _done(self.coordination.create_namespaced_lease("kube-node-lease", lease,
                                                            _preload_content=False))

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(10.0):
            try:
                self._heartbeat()
            except CALL_ERRORS as err:
                log.warning("node heartbeat failed: %s", err)

    # -- watches
    def _watch(self, list_fn: Callable[..., Any], field_selector: str,
               handle: Callable[[str, Json], None], resync: Callable[[Iterable[Json]], None],
               timeout: Callable[[], int]) -> None:
        """List, hand every object over, then watch; start again on expiry or error."""
        while not self.stopping.is_set():
            try:
                listed = _raw(list_fn(field_selector=field_selector, _preload_content=False))
                items = listed.get("items") or []
                resync(items)
                for pod in items:
                    handle("ADDED", pod)
                watcher: Any = watch.Watch
                stream = watcher().stream(
                    list_fn, field_selector=field_selector,
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=timeout(), allow_watch_bookmarks=True)
                for event in stream:
                    if self.stopping.is_set():
                        return
                    kind = event["type"]
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        handle(kind, event["raw_object"])
                    elif kind == "ERROR":
                        break
            except (*CALL_ERRORS, ValueError) as err:
                if self.stopping.is_set():
                    return
                log.warning("watch %s: %s; listing again", field_selector, err)
                self.stopping.wait(1.0)

    def _scheduler_loop(self) -> None:
        failed: set[str] = set()

        def bind(kind: str, pod: Json) -> None:
            meta, spec = pod["metadata"], pod["spec"]
            if kind == "DELETED" or spec.get("nodeName") or meta.get("deletionTimestamp"):
                failed.discard(meta["uid"])
                return
            if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
                return
            binding = client.V1Binding(
                metadata=client.V1ObjectMeta(name=meta["name"], namespace=meta["namespace"],
                                             uid=meta["uid"]),
                target=client.V1ObjectReference(api_version="v1", kind="Node",
                                                name=self.node_name))
            try:
                _done(self.scheduler.create_namespaced_pod_binding(
                    meta["name"], meta["namespace"], binding, _preload_content=False))
            except CALL_ERRORS as err:
                if isinstance(err, ApiException) and err.status in (404, 409):
                    failed.discard(meta["uid"])
                    return
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], err)
                failed.add(meta["uid"])
                return
            failed.discard(meta["uid"])
            log.info("bound pod %s/%s to %s", meta["namespace"], meta["name"], self.node_name)

        self._watch(self.scheduler.list_pod_for_all_namespaces,
                    "spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed",
                    bind, lambda _: None, lambda: 2 if failed else 60)

    def _pods_loop(self) -> None:
        self._watch(self.core.list_pod_for_all_namespaces, f"spec.nodeName={self.node_name}",
                    self._on_pod, self._resync, lambda: 60)

    def _resync(self, pods: Iterable[Json]) -> None:
        present = {p["metadata"]["uid"] for p in pods}
        with self.workers_lock:
            gone = [uid for uid in self.workers if uid not in present]
            for uid in gone:
                self.workers.pop(uid).remove()

    def _on_pod(self, kind: str, pod: Json) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self.workers_lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    self.workers.pop(uid).remove()
                self.deleted.discard(uid)
                return
            if worker is None and pod.get("status", {}).get("phase") not in TERMINAL:
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.start()
                return
        if worker is not None:
            worker.update(pod)
            with worker.lock:
                finished = worker.finished
            if finished and meta.get("deletionTimestamp"):
                worker._complete_deletion()
        elif meta.get("deletionTimestamp"):
            self.delete_now(meta["namespace"], meta["name"], uid)

    def delete_now(self, namespace: str, name: str, uid: str) -> None:
        """Complete a graceful deletion: delete with grace 0, only this very pod (by uid)."""
        if uid in self.deleted:
            return
        self.deleted.add(uid)
        options = client.V1DeleteOptions(grace_period_seconds=0,
                                         preconditions=client.V1Preconditions(uid=uid))
        try:
            _done(self.core.delete_namespaced_pod(name, namespace, body=options,
                                                  grace_period_seconds=0,
                                                  _preload_content=False))
        except CALL_ERRORS as err:
            if not (isinstance(err, ApiException) and err.status in (404, 409)):
                self.deleted.discard(uid)
                log.warning("deleting pod %s/%s failed (tried again on its next change): %s",
                            namespace, name, err)
                return
        log.info("pod %s/%s deleted", namespace, name)

    # -- life
    def run(self) -> None:
        """Register, serve until SIGTERM/SIGINT, then stop every pod's processes."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        self.register()
        for target in (self._heartbeat_loop, self._scheduler_loop, self._pods_loop):
            threading.Thread(target=target, name=target.__name__.strip("_"),
                             daemon=True).start()
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        log.info("stopping: terminating every pod's processes")
        self.stopping.set()
        with self.workers_lock:
            workers = list(self.workers.values())
        for w in workers:
            w._kill_all(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for w in workers:
            for c in w.containers:
                if c.proc is None:
                    continue
                try:
                    c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(c.proc.pid, signal.SIGKILL)


def _image_command(text: str) -> tuple[str, list[str]]:
    image, sep, command = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected IMAGE=JSON_LIST, got {text!r}")
    argv = json.loads(command)
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise argparse.ArgumentTypeError(f"the command of {image} must be a JSON list")
    return image, argv


def main(argv: Sequence[str] | None = None) -> None:
    """Command line of the process kubelet (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m devcluster.kubelet")
    parser.add_argument("--kubeconfig", required=True, help="the node's identity")
    parser.add_argument("--scheduler-kubeconfig", required=True,
                        help="the identity that binds pods (system:kube-scheduler)")
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--root-dir", type=Path, required=True, help="pod logs go here")
    parser.add_argument("--restart-backoff", type=float, default=10.0,
                        help="first crash-loop delay in seconds, doubling up to 300")
    parser.add_argument("--image-command", type=_image_command, action="append", default=[],
                        help='IMAGE=["cmd","arg"]: what to run for a container of IMAGE '
                             "that sets no command")
    parser.add_argument("--kubelet-version", default="v0.0.0-process",
                        help="the version the node reports")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    args.root_dir.mkdir(parents=True, exist_ok=True)
    new_client: Any = config.new_client_from_config
    node_api = new_client(config_file=args.kubeconfig)
    scheduler_api = new_client(config_file=args.scheduler_kubeconfig)
    Kubelet(node_api, scheduler_api, args.node_name, args.root_dir,
            dict(args.image_command), args.restart_backoff, args.kubelet_version).run()


if __name__ == "__main__":
    main()
