"""The real node: containerd and the real kubelet, running the images built from the checkout.

:func:`start` brings up, for one local control plane (:mod:`devcluster.kube`):

- **containerd** with a private configuration, root, state and socket under the node's
  folder, runc (``SystemdCgroup = false``, its own state folder) as the runtime, the CRI
  plugin's sandbox image the locally built pause image (:mod:`devcluster.images`), and a
  CNI bridge network on the node's bridge (no gateway, no masquerade: a pod in it reaches
  nothing);
- the **kubelet** (``hack/build-kube.sh`` builds it), with the ``cgroupfs`` driver under its
  own cgroup root, webhook authentication and authorization against the apiserver, a serving
  certificate of the cluster CA for :data:`devcluster.hoststate.NODE_IP` (the apiserver
  reaches it there for ``kubectl logs`` and ``exec``), and the settings this machine needs
  (swap on, cgroup v1, no ``CAP_SYS_RESOURCE``: see hack/KUBE.md).

Images are imported into containerd's ``k8s.io`` namespace before the kubelet starts.
:meth:`RealNode.stop` stops the pods' containers, the kubelet and containerd, unmounts what
they mounted, removes their cgroups, and gives the host state back
(:mod:`devcluster.hoststate`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devcluster import hoststate, images

log = logging.getLogger(__name__)

CONTAINERD = "containerd"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


class NodeDepsMissing(RuntimeError):
    """containerd, runc, ctr or the CNI plugins are missing: run ``make node-deps``."""


def find_tools() -> dict[str, str]:
    """Paths of containerd, ctr, runc and the CNI plugins' folder; :class:`NodeDepsMissing`
    naming what is missing."""
    found = {name: shutil.which(name) or "" for name in ("containerd", "ctr", "runc")}
    found["cni"] = next((d for d in CNI_BIN_DIRS if Path(d, "bridge").exists()), "")
    missing = [name for name, path in found.items() if not path]
    if missing:
        raise NodeDepsMissing(f"{', '.join(missing)} not found: install them with "
                              "'make node-deps' (hack/install-node-deps.sh)")
    return found


def _containerd_config(folder: Path, tools: dict[str, str]) -> str:
    return f"""\
version = 2
root = "{folder / 'root'}"
state = "{folder / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{folder / 'containerd.sock'}"

[ttrpc]
  address = "{folder / 'containerd.sock.ttrpc'}"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "{folder / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.PAUSE_IMAGE}"
  # Without CAP_SYS_RESOURCE runc cannot lower a container's oom_score_adj below its own,
  # and fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "{tools['runc']}"
  Root = "{folder / 'runc'}"
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{tools['cni']}"
  conf_dir = "{folder / 'cni'}"
"""


def _cni_config() -> str:
    return json.dumps({
        "cniVersion": "0.4.0", "name": "longtask-node",
        "plugins": [{"type": "bridge", "bridge": hoststate.BRIDGE, "isGateway": False,
                     "ipMasq": False, "hairpinMode": False,
                     "ipam": {"type": "host-local", "ranges": [[{
                         "subnet": hoststate.POD_SUBNET}]], "routes": []}}],
    }, indent=2)


def _no_pulls_env() -> dict[str, str]:
    """containerd's environment: every registry request goes to a proxy on a loopback port
    nothing listens on, so an image pull fails at once instead of leaving this machine
    (the node runs only images imported here)."""
    nowhere = "http://127.0.0.1:9"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy",)}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = nowhere
    return env


@dataclass
class RealNode:
    """A running containerd and kubelet; :meth:`stop` undoes them."""

    folder: Path
    socket: Path
    cgroup_root: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    _held: bool = False
    _importer: threading.Thread | None = None
    _import_error: BaseException | None = None

    def _import(self, archives: list[images.ImageArchive], timeout: float) -> None:
        """Wait for containerd to answer, then import ``archives``; an error is kept for
        :meth:`start_kubelet`."""
        try:
            deadline = time.monotonic() + timeout
            while not (self.socket.exists() and self.ctr("version", timeout=5).returncode == 0):
                containerd = self.processes.get(CONTAINERD)
                if containerd is None or containerd.poll() is not None:
                    raise RuntimeError("containerd exited before it answered")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"containerd did not answer in {timeout:.0f} s")
                time.sleep(0.05)
            self.timings["containerd"] = time.monotonic() - self.started
            for archive in archives:
                self.timings[f"import {archive.name}"] = images.import_archive(self.socket,
                                                                               archive)
        except BaseException as err:  # noqa: BLE001 - reported by start_kubelet, in the starting thread
            self._import_error = err

    def start_kubelet(self, *, kubelet_binary: Path, kubeconfig: Path, node_name: str,
                      ca: Path, serving_cert: Path, serving_key: Path, ports: Sequence[int],
                      launch: Callable[..., subprocess.Popen[bytes]],
                      until: Callable[[Callable[[], bool], str, str], None]) -> None:
        """Wait for the images to be in, then start the kubelet registering ``node_name``
        with ``kubeconfig``; ``ports`` are its API and healthz ports, ``until(check, what,
        component)`` the cluster's bounded wait. Returns once its healthz says ok; raises
        what the import raised, or what ``until`` raises. The node's Ready condition is
        left for the caller to wait on."""
        importer = self._importer
        if importer is not None:
            until(lambda: not importer.is_alive(), "the images' import", CONTAINERD)
        if self._import_error is not None:
            raise self._import_error
        port, healthz = ports
        hoststate.make_cgroup(self.cgroup_root)
        config_path = self.folder / "kubelet-config.yaml"
        config_path.write_text(yaml.safe_dump(kubelet_config(
            ca=ca, cert=serving_cert, key=serving_key, port=port, healthz_port=healthz,
            socket=self.socket, cgroup_root=self.cgroup_root,
            pod_logs=self.folder / "pod-logs")))
        self.processes["kubelet"] = launch("kubelet", [
            str(kubelet_binary), f"--config={config_path}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.folder / 'kubelet'}", f"--hostname-override={node_name}",
            f"--node-ip={hoststate.NODE_IP}", f"--cert-dir={self.folder / 'kubelet-pki'}",
        ])

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{healthz}/healthz",
                                            timeout=2) as resp:
                    return bool(resp.read() == b"ok")
            except OSError:
                return False

        until(healthy, "the kubelet", "kubelet")
        self.timings["kubelet healthy"] = time.monotonic() - self.started

    def ctr(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``ctr`` against this node's containerd, namespace ``k8s.io``."""
        return subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io",
                               *args], capture_output=True, text=True, timeout=timeout)

    def container_pid(self, container_id: str) -> int:
        """The host process id of a running container (``containerd://<id>`` or ``<id>``);
        ``LookupError`` when containerd runs no such task."""
        wanted = container_id.removeprefix("containerd://")
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3 and parts[0] == wanted and parts[2] == "RUNNING":
                return int(parts[1])
        raise LookupError(f"containerd runs no task {wanted}")

    def _kill_containers(self, timeout: float = 10.0) -> None:
        """SIGKILL every process in the node's cgroups (containers and sandboxes) until
        none is left; the runtime's records of them go with its folder."""
        deadline = time.monotonic() + timeout
        while True:
            pids: set[int] = set()
            for hierarchy in hoststate.cgroup_hierarchies():
                root = hierarchy / self.cgroup_root.lstrip("/")
                for procs in root.rglob("cgroup.procs") if root.is_dir() else []:
                    with contextlib.suppress(OSError, ValueError):
                        pids.update(int(p) for p in procs.read_text().split())
            if not pids or time.monotonic() > deadline:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def _shims(self) -> list[int]:
        """containerd shims started for this node's socket (they outlive containerd)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                    if (b"containerd-shim" in argv[0]
                            and str(self.socket).encode() in argv):
                        found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """Stop the kubelet, kill the containers (sandboxes too: the pods were to be
        stopped before, as a test or the stack does), stop containerd and its shims,
        unmount and remove what they left, and release the host state. Raises
        :class:`devcluster.hoststate.HostStateError` when something could not be undone."""
        began = time.monotonic()
        kubelet = self.processes.pop("kubelet", None)
        if kubelet is not None:
            _terminate(kubelet, 10.0)
        self._kill_containers()
        containerd = self.processes.pop(CONTAINERD, None)
        if containerd is not None:
            _terminate(containerd, 10.0)
        for pid in self._shims():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        errors = []
        try:
            hoststate.unmount_under(self.folder)
        except hoststate.HostStateError as err:
            errors.append(str(err))
        try:
            hoststate.remove_cgroup_tree(Path(self.cgroup_root))
        except hoststate.HostStateError as err:
            errors.append(str(err))
        if self._held:
            self._held = False
            try:
                hoststate.release(str(self.folder))
            except hoststate.HostStateError as err:
                errors.append(str(err))
        log.info("node stopped in %.1f s", time.monotonic() - began)
        if errors:
            raise hoststate.HostStateError("; ".join(errors))


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def kubelet_config(*, ca: Path, cert: Path, key: Path, port: int, healthz_port: int,
                   socket: Path, cgroup_root: str, pod_logs: Path) -> dict[str, object]:
    """The ``KubeletConfiguration`` of the node (see the module's docstring)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": hoststate.NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        # This machine has swap accounting off, cgroup v1 and a low open-file limit.
        "failSwapOn": False,
        "failCgroupV1": False,
        "maxOpenFiles": 20000,
        "podLogsDir": str(pod_logs),
        "resolvConf": "",
        "registerNode": True,
        "serializeImagePulls": False,
        # A busy test machine's disk must not make the kubelet evict pods or images.
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                         "nodefs.inodesFree": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # Status and pod changes reach the apiserver at once: the tests wait on them.
        "nodeStatusUpdateFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "shutdownGracePeriod": "0s",
        "logging": {"format": "text", "verbosity": 1},
    }


def start_runtime(folder: Path, archives: Sequence[images.ImageArchive],
                  launch: Callable[..., subprocess.Popen[bytes]],
                  timeout: float = 300.0) -> RealNode:
    """Take the host state (:func:`devcluster.hoststate.acquire`), start containerd in
    ``folder`` and import ``archives`` (the pause image first) in the background, so that
    the import overlaps the control plane's start; :meth:`RealNode.start_kubelet` waits for
    it. ``launch(name, argv, env=...)`` starts a process (the cluster's launcher: own
    process group, death signal). Raises :class:`NodeDepsMissing` or
    :class:`devcluster.hoststate.HostStateError`."""
    tools = find_tools()
    folder.mkdir(parents=True, exist_ok=True)
    cgroup_root = f"/{hoststate.CGROUP_PREFIX}{secrets.token_hex(4)}"
    node = RealNode(folder=folder, socket=folder / "containerd.sock",
                    cgroup_root=cgroup_root, started=time.monotonic())
    try:
        hoststate.acquire(str(folder))
        node._held = True
        (folder / "cni").mkdir(exist_ok=True)
        (folder / "cni" / "10-longtask.conflist").write_text(_cni_config())
        config = folder / "containerd.toml"
        config.write_text(_containerd_config(folder, tools))
        node.processes[CONTAINERD] = launch(
            CONTAINERD, [tools["containerd"], "--config", str(config)], env=_no_pulls_env())
    except BaseException:
        node.stop()
        raise
    node._importer = threading.Thread(target=node._import, args=(list(archives), timeout),
                                      daemon=True, name="image-import")
    node._importer.start()
    return node


