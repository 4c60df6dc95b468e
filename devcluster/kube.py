"""A real Kubernetes control plane on one machine, for the tests and the local demo.

Starts, on loopback ports chosen here:

- ``etcd``;
- ``kube-apiserver`` with TLS (certificates made here), ``Node,RBAC`` authorization, the
  default admission plugins plus ``NodeRestriction``, and service-account token signing;
- ``kube-controller-manager`` with the Job, CronJob, garbage-collector, namespace,
  service-account, pod-GC and TTL controllers, each under its own service account;
- the node, one of two kinds (``node=`` of :func:`start`, default ``$LONGTASK_KUBE_NODE``,
  else ``real``):

  - ``real``: containerd and the real kubelet (:mod:`devcluster.node`) running the images
    built from the checkout (:mod:`devcluster.images`), with ``kube-scheduler`` and the
    node-lifecycle controller; every pod gets the host's network (a mutating admission
    policy of this cluster sets ``hostNetwork``), so it reaches PostgreSQL on loopback;
  - ``process``: the process kubelet (:mod:`devcluster.kubelet`), which registers a Ready
    node, binds pending pods to it and runs their containers' commands as local processes.

The binaries come from ``hack/build-kube.sh`` (``make kube``). Everything started is
stopped on :meth:`KubeCluster.stop`, at interpreter exit, and — through the parent-death
signal — when the starting process dies; each component runs in its own process group.

Command line::

    python -m devcluster.kube up      # start in the background, print the env to use
    python -m devcluster.kube env     # print `export KUBECONFIG=...` for a running one
    python -m devcluster.kube down    # stop it
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devcluster.hoststate import process_alive
from devcluster.images import ImageArchive

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
GO_MOD = REPO / "hack" / "kube" / "go.mod"
NODE_NAME = "longtask-node"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "longtask-admin"
CONTROLLERS = (
    "job-controller", "cronjob-controller", "ttl-after-finished-controller",
    "garbage-collector-controller", "namespace-controller", "serviceaccount-controller",
    "serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller", "clusterrole-aggregation-controller",
    "deployment-controller", "replicaset-controller", "service-cidr-controller",
)
# The real node's controller: it lifts the not-ready taint a new node is registered with.
NODE_CONTROLLERS = ("node-lifecycle-controller",)
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
NODE_KINDS = ("real", "process")
# Stop order: the kubelet first (it stops the pods), then the controllers, then storage.
_STOP_ORDER = ("kubelet", "containerd", "kube-scheduler", "kube-controller-manager",
               "kube-apiserver", "etcd")
# Every pod of the local cluster runs in the host's network namespace: there is one node,
# no kube-proxy and no pod network, and the runner reaches PostgreSQL on 127.0.0.1.
HOST_NETWORK_POLICY = "longtask-devcluster-host-network"
PROCESS_RUNNER_IMAGE = "longtask/runner:local"  # a name only: the process kubelet runs commands

T = TypeVar("T")


class KubeBinariesMissing(RuntimeError):
    """The control-plane binaries are not built: run ``make kube`` (hack/build-kube.sh)."""


class KubeStartError(RuntimeError):
    """A component exited or did not become ready in time; the message has its log tail."""


# --------------------------------------------------------------------------- binaries


def pinned_versions() -> dict[str, str]:
    """``{"kubernetes": "v1.x.y", "etcd": "v3.x.y"}`` as pinned in hack/kube/go.mod."""
    text = GO_MOD.read_text()
    found: dict[str, str] = {}
    for key, module in (("kubernetes", "k8s.io/kubernetes"), ("etcd", "go.etcd.io/etcd/server/v3")):
        match = re.search(rf"^\s*{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
        if match is None:
            raise KubeBinariesMissing(f"{GO_MOD} pins no version of {module}")
        found[key] = match.group(1)
    return found


def bin_dir() -> Path:
    """Where hack/build-kube.sh puts the binaries (``$LONGTASK_KUBE_BIN_DIR`` overrides)."""
    override = os.environ.get("LONGTASK_KUBE_BIN_DIR")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "longtask" / f"kube-{pinned_versions()['kubernetes']}" / "bin"


def find_binaries() -> dict[str, Path]:
    """Paths of etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet;
    :class:`KubeBinariesMissing` naming the missing ones."""
    folder = bin_dir()
    paths = {name: folder / name for name in BINARIES}
    missing = [name for name, path in paths.items() if not os.access(path, os.X_OK)]
    if missing:
        raise KubeBinariesMissing(
            f"{', '.join(missing)} not found in {folder}: build them with 'make kube' "
            "(hack/build-kube.sh, about 20 minutes the first time)"
        )
    return paths


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _issue(common_name: str, *, groups: Sequence[str] = (), issuer: _Issued | None = None,
           ca: bool = False, dns_names: Sequence[str] = (), ips: Sequence[str] = (),
           server: bool = False, client: bool = False) -> _Issued:
    """An ECDSA P-256 certificate; self-signed when ``issuer`` is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
                        + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=not ca,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    signer = issuer.key if issuer else key
    return _Issued(builder.sign(signer, hashes.SHA256()), key)


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


# --------------------------------------------------------------------------- processes

_PR_SET_PDEATHSIG = 1
_libc: Any = None


def _preexec(death_signal: signal.Signals | None) -> Callable[[], None]:
    """A preexec_fn that unblocks SIGTERM/SIGINT (a supervisor blocks them for ``sigwait``
    and a child would inherit them blocked) and, given ``death_signal``, asks the kernel to
    send it to the child when the thread that started it dies."""
    def preexec() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        if death_signal is not None and _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, death_signal)
    return preexec


def _spawn(argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None,
           death_signal: signal.Signals | None = signal.SIGKILL,
           cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (its own process group), output to ``log_path``.

    ``death_signal`` (None: none) reaches the child if the starting thread dies first.
    """
    global _libc
    if death_signal is not None and _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=dict(env) if env is not None else None,
            cwd=cwd, preexec_fn=_preexec(death_signal),
        )


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _stop_group(pid: int, *, timeout: float = 10.0, wait: Callable[[float], bool]) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``timeout`` seconds.

    ``wait(seconds)`` returns True once the leader has exited.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    if not wait(timeout):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        wait(5.0)
    # Whatever the leader left in its group (it stops its own children on SIGTERM).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _popen_waiter(proc: subprocess.Popen[bytes]) -> Callable[[float], bool]:
    def wait(seconds: float) -> bool:
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True
    return wait


def _pid_waiter(pid: int) -> Callable[[float], bool]:
    def wait(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while process_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
    return wait


def _stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for name in _STOP_ORDER:
        proc = procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            _stop_group(proc.pid, timeout=15.0 if name == "kubelet" else 10.0,
                        wait=_popen_waiter(proc))
        elif proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str,
             interval: float = 0.2, on_timeout: Callable[[], str] | None = None) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something true (not None,
    False, 0 or empty), and return that value: the one bounded wait of the tests, the demo
    and the benchmarks.

    Raises ``TimeoutError`` naming ``what``, the last value seen and ``on_timeout()`` (e.g.
    a process's log) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            raise TimeoutError(f"waited {timeout:.0f}s for {what}; last seen: {value!r}"
                               + (f"\n{extra}" if extra else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------- cluster

if TYPE_CHECKING:
    from devcluster.node import RealNode

    _Finalizer = weakref.finalize[[dict[str, subprocess.Popen[bytes]], list[RealNode]],
                                  "KubeCluster"]


def _stop_cluster(procs: dict[str, subprocess.Popen[bytes]], nodes: list[RealNode]) -> None:
    """Stop the real node (its containers, containerd, the host state), then the rest."""
    while nodes:
        node = nodes.pop()
        for name in node.processes:
            procs.pop(name, None)
        node.stop()
    _stop_all(procs)


def node_kind(given: str | None = None) -> str:
    """``given``, else ``$LONGTASK_KUBE_NODE``, else ``real``; ``ValueError`` for anything
    but ``real`` or ``process``."""
    kind = given or os.environ.get("LONGTASK_KUBE_NODE") or "real"
    if kind not in NODE_KINDS:
        raise ValueError(f"unknown node kind {kind!r} (LONGTASK_KUBE_NODE): "
                         f"one of {', '.join(NODE_KINDS)}")
    return kind


@dataclass
class KubeCluster:
    """A running control plane. ``kubeconfig`` holds the admin identity (system:masters)."""

    workdir: Path
    server: str
    kubeconfig: Path
    ca_file: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    remove_workdir: bool = False
    node_kind: str = "process"
    # Images the real node imported (the pause image first), by name.
    images: list[str] = field(default_factory=list)
    kubelet_argv: list[str] = field(default_factory=list, repr=False)
    # The real node while it runs (a list, shared with the finalizer, that stop empties).
    nodes: list[RealNode] = field(default_factory=list, repr=False)
    _finalizer: _Finalizer | None = field(default=None, repr=False)

    @property
    def node(self) -> RealNode | None:
        """The real node (containerd and the kubelet), None with the process kubelet."""
        return self.nodes[0] if self.nodes else None

    @property
    def runner_image(self) -> str:
        """The image for the operator's runner Jobs: on the real node the runner image built
        from the checkout; on the process kubelet a name only (it runs the command with the
        project's interpreter)."""
        return next((name for name in self.images if "/runner:" in name),
                    PROCESS_RUNNER_IMAGE)

    @property
    def pod_image(self) -> str:
        """An image whose ``python3`` runs a test's program: the runner image (its user is
        10001; a program writing to a host folder needs :func:`shared_folder`)."""
        return self.runner_image

    @property
    def pod_log_dir(self) -> Path:
        """Folder of the pods' logs: the process kubelet's
        ``<namespace>_<pod>_<uid>/<container>.log``, or the real kubelet's
        ``<namespace>_<pod>_<uid>/<container>/<restart>.log`` (CRI log format)."""
        if self.node_kind == "real":
            return self.workdir / "node" / "pod-logs"
        return self.workdir / "kubelet" / "pods"

    def pod_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """The combined stdout/stderr of one container of a pod ('' when none was written),
        read from the kubelet's files (they outlive the pod on the process kubelet only).

        ``container`` defaults to the only (or first) container that logged.
        """
        text = ""
        for folder in sorted(self.pod_log_dir.glob(f"{namespace}_{pod}_*")):
            if self.node_kind == "real":
                dirs = sorted(d for d in folder.glob(container or "*") if d.is_dir())
                for log_file in sorted(dirs[0].glob("*.log")) if dirs else []:
                    text += _cri_log_text(log_file.read_text(errors="replace"))
                continue
            files = sorted(folder.glob(f"{container or '*'}.log"))
            if files:
                text += files[0].read_text(errors="replace")
        return text

    def container_pid(self, container_id: str) -> int:
        """The host process id of a running container, from its status' ``containerID``
        (``containerd://<id>`` on the real node, ``process://<pid>`` on the process
        kubelet); ``LookupError`` when it does not run."""
        if container_id.startswith("process://"):
            return int(container_id.removeprefix("process://"))
        if self.node is None:
            raise LookupError(f"no real node runs {container_id}")
        return self.node.container_pid(container_id)

    def env(self) -> dict[str, str]:
        """Environment variables that point kubectl and the clients at this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` with the admin identity."""
        from kubernetes import config
        new_client: Any = config.new_client_from_config
        return new_client(config_file=str(self.kubeconfig))

    def kubeconfig_for(self, name: str) -> Path:
        """The kubeconfig of one component identity: ``controller-manager``, ``node``,
        ``scheduler`` or ``admin``."""
        return self.workdir / f"{name}.kubeconfig"

    def restart_kubelet(self, *, timeout: float = 30.0) -> None:
        """Kill the process kubelet outright (SIGKILL; its pods' processes die with it, as
        with a node whose runtime lost them) and start a new one, which finds those pods'
        containers gone. Returns once the new kubelet has registered; ``KubeStartError``
        otherwise, ``RuntimeError`` on the real node."""
        if self.node_kind != "process":
            raise RuntimeError("restart_kubelet is the process kubelet's")
        old = self.processes.pop("kubelet")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(old.pid, signal.SIGKILL)
        old.wait(timeout=10)
        log_path = self.workdir / "logs" / "kubelet.log"
        registered = log_path.read_text(errors="replace").count(" registered")
        self.processes["kubelet"] = _spawn(self.kubelet_argv, log_path,
                                           env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                           death_signal=signal.SIGTERM, cwd=self.workdir)
        try:
            wait_for(lambda: log_path.read_text(errors="replace").count(" registered")
                     > registered, timeout=timeout, what="the new kubelet to register")
        except TimeoutError as err:
            raise KubeStartError(f"{err}; its log ends with:\n{_tail(log_path)}") from err

    def stop(self) -> None:
        """Stop every component (kubelet first, so pods get SIGTERM) and remove the folder
        when it was a temporary one."""
        if self._finalizer is not None:
            self._finalizer.detach()
        _stop_cluster(self.processes, self.nodes)
        if self.remove_workdir and not os.environ.get("LONGTASK_KUBE_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)


def shared_folder(folder: Path, name: str = "shared") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(volume, volumeMount)`` that mount host ``folder`` at the same path in a container,
    for a test's program to leave files the test reads; the folder is made writable for the
    image's user (10001). The process kubelet ignores volumes: its programs see the host."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777)
    return ({"name": name, "hostPath": {"path": str(folder), "type": "Directory"}},
            {"name": name, "mountPath": str(folder)})


def _cri_log_text(text: str) -> str:
    """The output in a CRI log file: each line is ``<time> <stream> <P|F> <text>``, where
    ``P`` marks a partial line continued by the next."""
    out = []
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 3:
            continue
        body = parts[3] if len(parts) == 4 else ""
        out.append(body if parts[2] == "P" else body + "\n")
    return "".join(out)


def _kubeconfig(server: str, ca_pem: bytes, user: str, cert: _Issued) -> dict[str, Any]:
    import base64

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "longtask", "cluster": {
            "server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(cert.cert_pem),
            "client-key-data": b64(cert.key_pem)}}],
        "contexts": [{"name": "longtask", "context": {
            "cluster": "longtask", "user": user, "namespace": "default"}}],
        "current-context": "longtask",
    }


def _write_pki(workdir: Path, server: str) -> dict[str, Path]:
    """CA, serving cert, service-account keys and one kubeconfig per identity."""
    pki = workdir / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    ca = _issue("longtask-ca", ca=True)
    serving = _issue("kube-apiserver", issuer=ca, server=True, ips=("127.0.0.1", SERVICE_IP),
                     dns_names=("localhost", "kubernetes", "kubernetes.default",
                                "kubernetes.default.svc",
                                "kubernetes.default.svc.cluster.local"))
    # The aggregation layer's front proxy, as on a kubeadm cluster: without it the
    # controller manager's delegated authentication complains of a missing CA bundle.
    proxy_ca = _issue("longtask-front-proxy-ca", ca=True)
    proxy_client = _issue("front-proxy-client", issuer=proxy_ca, client=True)
    # The real kubelet's serving certificate (the apiserver checks it against the CA when it
    # calls the node for logs and exec), and the apiserver's identity towards it.
    from devcluster.hoststate import NODE_IP
    kubelet_serving = _issue(NODE_NAME, issuer=ca, server=True, ips=(NODE_IP,),
                             dns_names=(NODE_NAME,))
    kubelet_client = _issue("kube-apiserver-kubelet-client", groups=("system:masters",),
                            issuer=ca, client=True)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    paths = {
        "proxy-ca": _write(pki / "front-proxy-ca.crt", proxy_ca.cert_pem, 0o644),
        "proxy-cert": _write(pki / "front-proxy-client.crt", proxy_client.cert_pem, 0o644),
        "proxy-key": _write(pki / "front-proxy-client.key", proxy_client.key_pem),
        "ca": _write(pki / "ca.crt", ca.cert_pem, 0o644),
        "kubelet-cert": _write(pki / "kubelet.crt", kubelet_serving.cert_pem, 0o644),
        "kubelet-key": _write(pki / "kubelet.key", kubelet_serving.key_pem),
        "kubelet-client-cert": _write(pki / "apiserver-kubelet-client.crt",
                                      kubelet_client.cert_pem, 0o644),
        "kubelet-client-key": _write(pki / "apiserver-kubelet-client.key",
                                     kubelet_client.key_pem),
        "serving-cert": _write(pki / "apiserver.crt", serving.cert_pem, 0o644),
        "serving-key": _write(pki / "apiserver.key", serving.key_pem),
        "sa-key": _write(pki / "sa.key", sa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())),
        "sa-pub": _write(pki / "sa.pub", sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644),
    }
    identities = {
        "admin": (ADMIN_USER, ("system:masters",)),
        "controller-manager": ("system:kube-controller-manager", ()),
        "scheduler": ("system:kube-scheduler", ()),
        "node": (f"system:node:{NODE_NAME}", ("system:nodes",)),
    }
    for name, (user, groups) in identities.items():
        cert = _issue(user, groups=groups, issuer=ca, client=True)
        config = _kubeconfig(server, ca.cert_pem, user, cert)
        paths[name] = _write(workdir / f"{name}.kubeconfig",
                             yaml.safe_dump(config, sort_keys=False).encode())
    return paths


def _https_get(url: str, ca_file: Path, *, timeout: float = 2.0) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def start(*, workdir: Path | None = None, timeout: float = 90.0, node: str | None = None,
          images: Sequence[ImageArchive] | None = None,
          image_commands: Mapping[str, Sequence[str]] | None = None,
          restart_backoff: float = 1.0, tie_to_parent: bool = True) -> KubeCluster:
    """Start etcd, kube-apiserver, kube-controller-manager and the node: the real one
    (containerd, the kubelet, kube-scheduler) or the process kubelet (``node``, see
    :func:`node_kind`).

    Returns once the apiserver is ready, the node is Ready and the ``default`` service
    account exists (the controllers are working). ``workdir`` (default: a new temporary
    folder, removed on stop) holds certificates, kubeconfigs, etcd data, the node's state
    and logs. ``images`` are the archives the real node imports (default: the runner image
    built from the checkout, :func:`devcluster.images.runner_image`); the pause image is
    always imported. ``image_commands`` maps an image to the command the process kubelet
    runs for containers of that image that set no ``command``; ``restart_backoff`` is its
    first crash-loop delay in seconds (a kubelet's is 10). With ``tie_to_parent`` the
    components die with the calling thread (servers by SIGKILL, the kubelets by SIGTERM):
    call from a thread that lives as long as the cluster should, such as the main one.

    Raises :class:`KubeBinariesMissing`, :class:`devcluster.node.NodeDepsMissing`,
    :class:`devcluster.images.ImageBuildError`, ``ValueError`` for an unknown node kind, or
    :class:`KubeStartError` (with the failing component's log tail) when something exits or
    is not ready after ``timeout`` seconds.
    """
    kind = node_kind(node)
    binaries = find_binaries()
    archives: list[ImageArchive] = []
    if kind == "real":
        from devcluster import images as node_images
        from devcluster import node as real_node
        real_node.find_tools()
        archives = [node_images.build_pause(),
                    *(images if images is not None else [node_images.runner_image()])]
    started = time.monotonic()
    remove = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="longtask-kube-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    etcd_port, peer_port, api_port, cm_port = (free_port() for _ in range(4))
    server = f"https://127.0.0.1:{api_port}"
    paths = _write_pki(workdir, server)
    cluster = KubeCluster(workdir=workdir, server=server, kubeconfig=paths["admin"],
                          ca_file=paths["ca"], remove_workdir=remove, node_kind=kind,
                          images=[a.name for a in archives])
    procs = cluster.processes
    cluster._finalizer = weakref.finalize(cluster, _stop_cluster, procs, cluster.nodes)

    def launch(name: str, argv: Sequence[str],
               env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        # If this process dies, the servers are killed outright; the kubelets get SIGTERM
        # so that they can stop their pods first.
        death = signal.SIGTERM if name == "kubelet" else signal.SIGKILL
        procs[name] = _spawn(argv, logs / f"{name}.log", env=env, cwd=workdir,
                             death_signal=death if tie_to_parent else None)
        log.info("started %s (pid %d)", name, procs[name].pid)
        return procs[name]

    def check_running() -> None:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise KubeStartError(f"{name} exited with code {proc.returncode}; "
                                     f"its log ({logs / (name + '.log')}) ends with:\n"
                                     f"{_tail(logs / (name + '.log'))}")

    def until(check: Callable[[], bool], what: str, component: str) -> None:
        deadline = started + timeout
        while not check():
            check_running()
            if time.monotonic() > deadline:
                raise KubeStartError(
                    f"{what} not ready after {timeout:.0f}s; the log of {component} ends "
                    f"with:\n{_tail(logs / (component + '.log'))}")
            time.sleep(0.1)

    try:
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        launch("etcd", [
            str(binaries["etcd"]), "--name=default", f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}", "--unsafe-no-fsync",
            "--log-level=warn", "--quota-backend-bytes=2147483648",
        ])
        launch("kube-apiserver", [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--tls-cert-file={paths['serving-cert']}",
            f"--tls-private-key-file={paths['serving-key']}",
            f"--client-ca-file={paths['ca']}",
            f"--requestheader-client-ca-file={paths['proxy-ca']}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={paths['proxy-cert']}",
            f"--proxy-client-key-file={paths['proxy-key']}",
            "--authorization-mode=Node,RBAC",
            # The real kubelet, for logs, exec and port-forward: at the node's InternalIP,
            # its serving certificate checked against the cluster CA.
            f"--kubelet-client-certificate={paths['kubelet-client-cert']}",
            f"--kubelet-client-key={paths['kubelet-client-key']}",
            f"--kubelet-certificate-authority={paths['ca']}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            # The default set (NamespaceLifecycle, LimitRanger, ServiceAccount, PodSecurity,
            # ResourceQuota, the webhooks and admission policies, ...) plus what a real
            # cluster adds for its kubelets.
            "--enable-admission-plugins=NodeRestriction",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={paths['sa-pub']}",
            f"--service-account-signing-key-file={paths['sa-key']}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The only endpoint is 127.0.0.1, which Endpoints validation refuses.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--profiling=false",
            f"--cert-dir={workdir / 'apiserver-certs'}",
        ])
        if kind == "real":
            from devcluster import node as real_node
            # containerd and the images' import first: they need no apiserver, and the
            # import (a few hundred MB unpacked) is the longest step of the start.
            cluster.nodes.append(real_node.start_runtime(workdir / "node", archives, launch))
        until(lambda: _http_ok(f"{etcd_url}/health"), "etcd", "etcd")
        until(lambda: _https_get(f"{server}/readyz", paths["ca"])[0] == 200,
              "kube-apiserver", "kube-apiserver")
        cm_kubeconfig = str(paths["controller-manager"])
        launch("kube-controller-manager", [
            str(binaries["kube-controller-manager"]),
            f"--kubeconfig={cm_kubeconfig}",
            f"--authentication-kubeconfig={cm_kubeconfig}",
            f"--authorization-kubeconfig={cm_kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={cm_port}",
            f"--cert-dir={workdir / 'controller-manager-certs'}",
            f"--controllers={','.join(CONTROLLERS + (NODE_CONTROLLERS if kind == 'real' else ()))}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={paths['sa-key']}",
            f"--root-ca-file={paths['ca']}",
            "--leader-elect=false", "--cluster-name=longtask",
        ])
        if kind == "real":
            _start_real_node(cluster, binaries, paths, launch, until)
        else:
            _start_process_kubelet(cluster, paths, image_commands, restart_backoff, launch)
        until(lambda: _node_ready(server, paths["ca"], paths["admin"]), "the node",
              "kubelet")
        until(lambda: _default_sa_exists(server, paths["ca"], paths["admin"]),
              "the default service account", "kube-controller-manager")
    except BaseException:
        cluster.stop()
        raise
    log.info("cluster ready at %s in %.1fs (workdir %s)", server, time.monotonic() - started,
             workdir)
    return cluster


def _start_real_node(cluster: KubeCluster, binaries: Mapping[str, Path],
                     paths: Mapping[str, Path],
                     launch: Callable[..., subprocess.Popen[bytes]],
                     until: Callable[[Callable[[], bool], str, str], None]) -> None:
    """kube-scheduler, the host-network admission policy, then the kubelet (containerd is
    up already)."""
    scheduler = str(paths["scheduler"])
    launch("kube-scheduler", [
        str(binaries["kube-scheduler"]), f"--kubeconfig={scheduler}",
        f"--authentication-kubeconfig={scheduler}", f"--authorization-kubeconfig={scheduler}",
        "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--leader-elect=false",
    ])
    _apply_host_network_policy(cluster)
    node = cluster.node
    assert node is not None
    node.start_kubelet(
        kubelet_binary=binaries["kubelet"], kubeconfig=paths["node"], node_name=NODE_NAME,
        ca=paths["ca"], serving_cert=paths["kubelet-cert"], serving_key=paths["kubelet-key"],
        ports=(free_port(), free_port()), launch=launch, until=until)


def _apply_host_network_policy(cluster: KubeCluster) -> None:
    """Register the MutatingAdmissionPolicy (and its binding) that gives every new pod
    ``hostNetwork: true``: the cluster's, not the chart's."""
    from kubernetes import client

    api = cluster.api_client()
    custom: Any = client.CustomObjectsApi(api)
    group, version = "admissionregistration.k8s.io", "v1"
    policy = {
        "apiVersion": f"{group}/{version}", "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": HOST_NETWORK_POLICY},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"]}]},
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {
                "expression": "Object{spec: Object.spec{hostNetwork: true}}"}}],
        },
    }
    binding = {
        "apiVersion": f"{group}/{version}", "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": HOST_NETWORK_POLICY},
        "spec": {"policyName": HOST_NETWORK_POLICY},
    }
    try:
        custom.create_cluster_custom_object(group, version, "mutatingadmissionpolicies",
                                            policy)
        custom.create_cluster_custom_object(group, version,
                                            "mutatingadmissionpolicybindings", binding)
    finally:
        api.close()


def _start_process_kubelet(cluster: KubeCluster, paths: Mapping[str, Path],
                           image_commands: Mapping[str, Sequence[str]] | None,
                           restart_backoff: float,
                           launch: Callable[..., subprocess.Popen[bytes]]) -> None:
    """The process kubelet, which also binds the pods (there is no scheduler)."""
    workdir = cluster.workdir
    kubelet_argv = [
        sys.executable, "-m", "devcluster.kubelet",
        f"--kubeconfig={paths['node']}", f"--scheduler-kubeconfig={paths['scheduler']}",
        f"--node-name={NODE_NAME}", f"--root-dir={workdir / 'kubelet'}",
        f"--restart-backoff={restart_backoff}",
        f"--kubelet-version={pinned_versions()['kubernetes']}-process",
    ]
    for image, command in (image_commands or {}).items():
        kubelet_argv.append(f"--image-command={image}={json.dumps(list(command))}")
    cluster.kubelet_argv = kubelet_argv
    launch("kubelet", kubelet_argv, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _admin_get(server: str, ca: Path, kubeconfig: Path, path: str) -> tuple[int, Any]:
    """GET ``path`` as the admin (client certificate from the kubeconfig's folder)."""
    pki = kubeconfig.parent / "pki"
    cert, key = pki / "admin.crt", pki / "admin.key"
    if not cert.exists():
        config = yaml.safe_load(kubeconfig.read_text())
        import base64
        user = config["users"][0]["user"]
        _write(cert, base64.b64decode(user["client-certificate-data"]))
        _write(key, base64.b64decode(user["client-key-data"]))
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    try:
        with urllib.request.urlopen(server + path, context=context, timeout=2.0) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), None
    except (urllib.error.URLError, OSError):
        return 0, None


def _node_ready(server: str, ca: Path, kubeconfig: Path) -> bool:
    code, node = _admin_get(server, ca, kubeconfig, f"/api/v1/nodes/{NODE_NAME}")
    if code != 200:
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions", []))


def _default_sa_exists(server: str, ca: Path, kubeconfig: Path) -> bool:
    code, _ = _admin_get(server, ca, kubeconfig,
                         "/api/v1/namespaces/default/serviceaccounts/default")
    return code == 200


def apply_crds(api_client: Any, folder: Path = REPO / "crds", *,
               timeout: float = 30.0) -> list[str]:
    """Server-side apply every CustomResourceDefinition in ``folder/*.yaml``.

    Returns the CRD names, once each is Established; raises ``TimeoutError`` naming the
    ones that are not after ``timeout`` seconds, ``ApiException`` when one is refused.
    """
    from kubernetes import client

    api: Any = client.ApiextensionsV1Api(api_client)
    names: list[str] = []
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            _ = api.patch_custom_resource_definition(
                name, doc, field_manager="longtask-devcluster", force=True,
                _content_type="application/apply-patch+yaml", _preload_content=False).data
            names.append(name)

    def established() -> list[str]:
        pending = []
        for name in names:
            crd = json.loads(api.read_custom_resource_definition(
                name, _preload_content=False).data)
            conditions = crd.get("status", {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True"
                       for c in conditions):
                pending.append(name)
        return pending

    wait_for(lambda: not established(), timeout=timeout,
             what=f"CRDs to be Established ({', '.join(names)})")
    return names


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[KubeCluster]:
    """Context manager: :func:`start` (same keyword arguments), stopped on exit."""
    cluster = start(**kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- command line


def default_dir() -> Path:
    """The folder of the command-line cluster (``$LONGTASK_KUBE_DIR`` overrides)."""
    override = os.environ.get("LONGTASK_KUBE_DIR")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "longtask" / "cluster"


def _state_path(folder: Path) -> Path:
    return folder / "state.json"


def _read_state(folder: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(_state_path(folder).read_text())
    except (OSError, ValueError):
        return None
    return state


def _serve(folder: Path, timeout: float) -> int:
    """Run a cluster in ``folder`` until SIGTERM/SIGINT, recording pids in state.json."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        cluster = start(workdir=folder, timeout=timeout)
    except (KubeStartError, KubeBinariesMissing, TimeoutError) as err:
        log.error("%s", err)
        return 1
    state = {
        "supervisor": os.getpid(),
        "server": cluster.server,
        "kubeconfig": str(cluster.kubeconfig),
        "pids": {name: proc.pid for name, proc in cluster.processes.items()},
        "ready": True,
    }
    tmp = _state_path(folder).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(_state_path(folder))
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    cluster.stop()
    _state_path(folder).unlink(missing_ok=True)
    return 0


def _up(folder: Path, timeout: float) -> int:
    state = _read_state(folder)
    if state and process_alive(int(state["supervisor"])):
        print(f"already running at {state['server']}")
        print(f"export KUBECONFIG={state['kubeconfig']}")
        return 0
    if folder.exists():
        _down(folder)
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.monotonic()
    supervisor = _spawn([sys.executable, "-m", "devcluster.kube", "serve", "--dir", str(folder),
                         "--timeout", str(timeout)], folder / "supervisor.log",
                        death_signal=None, cwd=REPO)
    deadline = started + timeout + 30
    while True:
        state = _read_state(folder)
        if state and state.get("ready"):
            break
        if supervisor.poll() is not None or time.monotonic() > deadline:
            print(f"the cluster did not start; {folder / 'supervisor.log'} ends with:\n"
                  f"{_tail(folder / 'supervisor.log')}", file=sys.stderr)
            if supervisor.poll() is None:
                _stop_group(supervisor.pid, wait=_popen_waiter(supervisor))
            return 1
        time.sleep(0.2)
    print(f"cluster ready at {state['server']} in {time.monotonic() - started:.1f}s "
          f"(logs in {folder / 'logs'})")
    print(f"export KUBECONFIG={state['kubeconfig']}")
    return 0


def _down(folder: Path) -> int:
    state = _read_state(folder)
    if not state:
        print(f"no cluster recorded in {folder}")
        return 0
    supervisor = int(state["supervisor"])
    if process_alive(supervisor) and "devcluster.kube" in _cmdline(supervisor):
        _stop_group(supervisor, timeout=45.0, wait=_pid_waiter(supervisor))
    # The supervisor is gone: stop what it recorded ("kubelet" names the process kubelet's
    # module and the real kubelet's binary alike), then what a real node left.
    for name in _STOP_ORDER:
        pid = state.get("pids", {}).get(name)
        if pid and process_alive(int(pid)) and name in _cmdline(int(pid)):
            _stop_group(int(pid), wait=_pid_waiter(int(pid)))
    if (folder / "node").is_dir():
        from devcluster import hoststate
        hoststate.unmount_under(folder / "node")
        hoststate.release(str(folder / "node"))
    _state_path(folder).unlink(missing_ok=True)
    print("cluster stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``up`` | ``down`` | ``env`` (and ``serve``, which ``up`` runs in the background)."""
    parser = argparse.ArgumentParser(prog="python -m devcluster.kube",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("command", choices=("up", "down", "env", "serve"))
    parser.add_argument("--dir", type=Path, default=None,
                        help="cluster folder (default: $LONGTASK_KUBE_DIR or "
                             "~/.cache/longtask/cluster)")
    parser.add_argument("--timeout", type=float, default=90.0, help="start timeout, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    folder: Path = (args.dir or default_dir()).resolve()
    if args.command == "serve":
        return _serve(folder, args.timeout)
    if args.command == "up":
        return _up(folder, args.timeout)
    if args.command == "down":
        return _down(folder)
    state = _read_state(folder)
    if not state or not process_alive(int(state["supervisor"])):
        print(f"no running cluster in {folder}; start one with: python -m devcluster.kube up",
              file=sys.stderr)
        return 1
    print(f"export KUBECONFIG={state['kubeconfig']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
