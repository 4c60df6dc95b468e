"""The host state a real node changes, recorded before it starts and put back after it stops.

The kubelet and containerd change the machine beyond their own folders: kernel tunables
(the kubelet sets ``vm.overcommit_memory``, ``kernel.panic``, ``kernel.panic_on_oops``, ...),
iptables chains (``KUBE-KUBELET-CANARY``, ``KUBE-IPTABLES-HINT``), folders at fixed paths
(``/var/lib/kubelet``, ``/var/log/containers``, ``/run/containerd``, ...), mounts, cgroups;
and the node needs an address that is not loopback (the kubelet refuses one), which lives
on a bridge made here (:data:`BRIDGE`, :data:`NODE_IP`).

Several nodes may run at once on one machine (a test session's cluster beside the
end-to-end stack's), and that state is the machine's, not one node's: :func:`acquire`
records it when the first node starts, :func:`release` puts it back when the last one
stops. Who holds it is kept in :data:`REGISTRY` under a lock file; a holder whose process
died is dropped, and the record it was started from is kept for the next ``release``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# 198.18.0.0/15 is the benchmarking range (RFC 2544): never routed, on no network here.
NODE_IP = "198.18.0.1"
POD_SUBNET = "198.18.1.0/24"
BRIDGE = "ltnode0"
LOCK = Path("/run/lock/longtask-node.lock")
REGISTRY = Path("/run/longtask-node.json")
SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
           "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes")
# Fixed paths the kubelet, containerd and its shims create whatever their configuration.
PATHS = ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/run/containerd",
         "/var/lib/containerd", "/opt/containerd", "/var/lib/cni", "/run/netns")
TABLES = ("filter", "nat", "mangle")
CGROUP_PREFIX = "longtask-node-"


class HostStateError(RuntimeError):
    """A change to the host could not be made or undone; the message says which."""


@dataclass
class Snapshot:
    """What the host looked like before the first node: sysctl values, which of
    :data:`PATHS` were missing, the iptables chains per tool and table, the top-level
    cgroups per hierarchy."""

    sysctls: dict[str, str] = field(default_factory=dict)
    missing_paths: list[str] = field(default_factory=list)
    chains: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    cgroups: dict[str, list[str]] = field(default_factory=dict)


def _run(argv: list[str], *, check: bool = True) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise HostStateError(f"{' '.join(argv)} failed ({result.returncode}): "
                             f"{result.stderr.strip()}")
    return result.stdout


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    """The current value of each of :data:`SYSCTLS` that this kernel has."""
    found = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            found[name] = _sysctl_path(name).read_text().strip()
    return found


def _iptables_tools() -> list[str]:
    return [tool for tool in ("iptables", "ip6tables") if shutil.which(tool)]


def read_chains() -> dict[str, dict[str, list[str]]]:
    """``{tool: {table: [chain, ...]}}`` for iptables and ip6tables (user chains only)."""
    found: dict[str, dict[str, list[str]]] = {}
    for tool in _iptables_tools():
        found[tool] = {}
        for table in TABLES:
            rules = _run([tool, "-w", "5", "-t", table, "-S"], check=False)
            found[tool][table] = sorted(line.split()[1] for line in rules.splitlines()
                                        if line.startswith("-N "))
    return found


def cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (each v1 controller's, and the unified one)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] in ("cgroup", "cgroup2"):
            found.append(Path(parts[1]))
    return found


def read_cgroups() -> dict[str, list[str]]:
    """``{hierarchy: [top-level cgroup, ...]}``."""
    return {str(h): sorted(p.name for p in h.iterdir() if p.is_dir())
            for h in cgroup_hierarchies()}


def mounts_under(*folders: Path | str) -> list[str]:
    """Mount points at or below any of ``folders``, deepest first."""
    roots = [str(Path(f)) for f in folders]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == r or point.startswith(r.rstrip("/") + "/") for r in roots):
            found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_under(*folders: Path | str) -> None:
    """Unmount (lazily, deepest first) everything mounted at or below ``folders``."""
    for _ in range(5):  # a mount can hide another at the same point
        points = mounts_under(*folders)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
    left = mounts_under(*folders)
    if left:
        raise HostStateError(f"still mounted: {', '.join(left)}")


def make_cgroup(top: str) -> None:
    """Make cgroup ``top`` (``/name``) in every hierarchy, as the kubelet wants its
    ``cgroupRoot``; a v1 cpuset one gets its parent's CPUs and memory nodes."""
    for hierarchy in cgroup_hierarchies():
        folder = hierarchy / top.lstrip("/")
        folder.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            mine, parent = folder / name, folder.parent / name
            if mine.exists() and parent.exists() and not mine.read_text().strip():
                mine.write_text(parent.read_text())


def remove_cgroup_tree(top: Path) -> None:
    """Remove cgroup ``top`` and every cgroup below it (deepest first), in every hierarchy
    that has it. Waits up to 10 s for their processes to leave."""
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / top.relative_to("/") if top.is_absolute() else hierarchy / top
        if not root.is_dir():
            continue
        deadline = time.monotonic() + 10
        while root.exists():
            dirs = [*sorted((p for p in root.rglob("*") if p.is_dir()),
                            key=lambda p: -len(p.parts)), root]
            for d in dirs:
                with contextlib.suppress(OSError):
                    d.rmdir()
            if root.exists():
                if time.monotonic() > deadline:
                    raise HostStateError(f"cgroup {root} still holds processes")
                time.sleep(0.1)


def take() -> Snapshot:
    """Record the host state now."""
    return Snapshot(sysctls=read_sysctls(),
                    missing_paths=[p for p in PATHS if not os.path.lexists(p)],
                    chains=read_chains(), cgroups=read_cgroups())


def _restore_chains(before: dict[str, dict[str, list[str]]]) -> None:
    for tool in _iptables_tools():
        for table in TABLES:
            old = set(before.get(tool, {}).get(table, []))
            rules = _run([tool, "-w", "5", "-t", table, "-S"], check=False).splitlines()
            new = {line.split()[1] for line in rules if line.startswith("-N ")} - old
            if not new:
                continue
            # Rules of kept chains that jump to a chain to delete go first.
            for rule in rules:
                words = shlex.split(rule)
                if (len(words) > 2 and words[0] == "-A" and words[1] not in new
                        and any(words[i] in ("-j", "-g") and words[i + 1] in new
                                for i in range(len(words) - 1))):
                    _run([tool, "-w", "5", "-t", table, "-D", *words[1:]], check=False)
            for chain in sorted(new):
                _run([tool, "-w", "5", "-t", table, "-F", chain], check=False)
            for chain in sorted(new):
                _run([tool, "-w", "5", "-t", table, "-X", chain])


def restore(snapshot: Snapshot) -> None:
    """Put the host back as ``snapshot`` recorded it: sysctls, iptables chains, the fixed
    paths (unmounted, then removed where they were missing), the nodes' top-level cgroups
    (:data:`CGROUP_PREFIX`). Raises :class:`HostStateError` for what could not be undone.
    (The bridge goes in :func:`release`.)"""
    errors = []
    for name, value in snapshot.sysctls.items():
        try:
            if _sysctl_path(name).read_text().strip() != value:
                _sysctl_path(name).write_text(value)
        except OSError as err:
            errors.append(f"sysctl {name}: {err}")
    try:
        _restore_chains(snapshot.chains)
    except HostStateError as err:
        errors.append(str(err))
    try:
        unmount_under(*snapshot.missing_paths)
    except HostStateError as err:
        errors.append(str(err))
    for path in snapshot.missing_paths:
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
            if os.path.lexists(path):
                errors.append(f"cannot remove {path}")
    for hierarchy, names in read_cgroups().items():
        new = set(names) - set(snapshot.cgroups.get(hierarchy, names))
        # Only the nodes' own (cgroupRoot CGROUP_PREFIX-*): another program's new cgroup
        # is none of this module's business.
        for name in sorted(n for n in new if n.startswith(CGROUP_PREFIX)):
            try:
                remove_cgroup_tree(Path("/") / name)
            except HostStateError as err:
                errors.append(str(err))
    if errors:
        raise HostStateError("; ".join(errors))


# --------------------------------------------------------------------------- the bridge


def make_bridge() -> None:
    """The node's link: bridge :data:`BRIDGE`, up, holding :data:`NODE_IP`/32."""
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addresses = _run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE])
    if f" {NODE_IP}/" not in addresses:
        _run(["ip", "addr", "add", f"{NODE_IP}/32", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])


def delete_bridge() -> None:
    """Remove :data:`BRIDGE` if it exists."""
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        _run(["ip", "link", "del", BRIDGE])


# --------------------------------------------------------------------------- holders


@contextlib.contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            state: dict[str, Any] = json.loads(REGISTRY.read_text())
        except (OSError, ValueError):
            state = {}
        yield state
        if state.get("holders"):
            tmp = REGISTRY.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(REGISTRY)
        else:
            REGISTRY.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(holder: str) -> None:
    """Register node ``holder`` (its work folder) of this process; the first holder records
    the host state (:func:`take`) and makes the bridge. Raises :class:`HostStateError`."""
    with _locked() as state:
        holders = {h: pid for h, pid in (state.get("holders") or {}).items() if process_alive(pid)}
        if "snapshot" not in state:
            state["snapshot"] = asdict(take())
        make_bridge()
        holders[holder] = os.getpid()
        state["holders"] = holders


def release(holder: str) -> None:
    """Unregister ``holder``; when no live holder is left, :func:`restore` the host as the
    first one found it. Raises :class:`HostStateError` for what could not be undone."""
    with _locked() as state:
        holders = {h: pid for h, pid in (state.get("holders") or {}).items()
                   if process_alive(pid) and h != holder}
        state["holders"] = holders
        if holders or "snapshot" not in state:
            return
        snapshot = Snapshot(**state.pop("snapshot"))
        try:
            restore(snapshot)
        finally:
            delete_bridge()


def holders() -> dict[str, int]:
    """``{node folder: pid}`` of the nodes that hold the host state now (live ones)."""
    with _locked() as state:
        return {h: pid for h, pid in (state.get("holders") or {}).items() if process_alive(pid)}
