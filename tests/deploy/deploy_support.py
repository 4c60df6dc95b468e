"""Helpers of the deployment checks: the tools, rendering the chart, kubectl, identities,
and podman on the private storage of the images built for the session.

helm and hadolint come from ``hack/install-tools.sh`` (``make tools``), built into a cache
outside git; buildah, podman, runc and mmdebstrap from ``hack/install-system-deps.sh``.
When one is missing the tests fail with that command, they never skip.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from longtask.operator.settings import OperatorSettings

from devcluster.kube import KubeCluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "longtask"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBECTL = "/usr/bin/kubectl"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


@functools.cache
def tools_dir() -> Path:
    """The folder hack/install-tools.sh installs helm and hadolint into."""
    out = subprocess.run([str(REPO / "hack" / "install-tools.sh"), "--print-bin-dir"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def tool(name: str) -> Path:
    """The path of ``helm`` or ``hadolint``; fails the test (never skips) when missing."""
    path = tools_dir() / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: install it with 'make tools' "
                    "(hack/install-tools.sh, a few minutes the first time)", pytrace=False)
    return path


@functools.cache
def kube_version() -> str:
    """The Kubernetes release the local control plane runs (hack/kube/go.mod), e.g. v1.37.2."""
    text = (REPO / "hack" / "kube" / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", text, re.MULTILINE)
    assert match, "hack/kube/go.mod pins no k8s.io/kubernetes"
    return match.group(1)


def sample_run_job() -> dict[str, Any]:
    """The run Job the operator's code makes for a small Export task (operator/manifests.py)."""
    from longtask.operator.manifests import build_run_job

    from longtask.model import Task

    task = Task.from_body({
        "metadata": {"name": "t", "namespace": "ns", "uid": "00000000-0000-0000-0000-000000000001",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"type": "Export", "organization": "acme", "params": {}}})
    return build_run_job(task, OperatorSettings(runner_image="r:1"))


def run(argv: Sequence[str | Path], *, stdin: str | None = None,
        env: Mapping[str, str] | None = None, check: bool = True,
        timeout: float = 120, cwd: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; with ``check``, an ``AssertionError`` carrying its output on failure."""
    result = subprocess.run([str(a) for a in argv], input=stdin, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, **(env or {})},
                            cwd=cwd)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(map(str, argv))} exited with {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}")
    return result


def helm(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with a throwaway home (no user config, no repositories)."""
    home = REPO / "build" / "helm-home"
    env = {f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}
    return run([tool("helm"), *args], env=env, check=check)


def template_args(values: Iterable[Path] = (), sets: Iterable[str] = (), *,
                  namespace: str = "longtask", release: str = "lt") -> list[str]:
    """Arguments of ``helm template`` for the pinned Kubernetes release."""
    args = ["template", release, str(CHART), "--namespace", namespace,
            "--kube-version", kube_version()]
    for path in values:
        args += ["--values", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


def render(values: Iterable[Path] = (), sets: Iterable[str] = (), *,
           namespace: str = "longtask", release: str = "lt",
           extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The chart rendered by ``helm template`` as a list of objects (hooks included)."""
    out = helm(*template_args(values, sets, namespace=namespace, release=release), *extra)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(objects: Iterable[Mapping[str, Any]], kind: str,
         name: str | None = None) -> list[Mapping[str, Any]]:
    """The objects of ``kind`` (and ``name``, if given)."""
    return [o for o in objects if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)]


def kubectl(cluster: KubeCluster, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """kubectl as the cluster's admin."""
    return run([KUBECTL, *args], stdin=stdin, env=cluster.env(), check=check)


def token_kubeconfig(cluster: KubeCluster, core_v1: Any, namespace: str,
                     service_account: str, path: Path) -> Path:
    """A kubeconfig that logs in with a fresh token of ``namespace/service_account``: the
    process using it is that ServiceAccount, exactly as in a pod."""
    token = core_v1.create_namespaced_service_account_token(
        service_account, namespace,
        {"spec": {"audiences": [], "expirationSeconds": 3600}}).status.token
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": base64.b64encode(
                cluster.ca_file.read_bytes()).decode()}}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": service_account,
                                                "namespace": namespace}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class Release:
    """The chart rendered for one namespace, its identities applied to the cluster."""

    namespace: str
    name: str
    objects: list[dict[str, Any]]

    @property
    def fullname(self) -> str:
        return f"{self.name}-longtask"

    def service_account(self, component: str) -> str:
        return f"{self.fullname}-{component}"

    def find(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind
                and (name is None or o["metadata"]["name"] == name)]

    def container_env(self, deployment: str) -> dict[str, str]:
        """Plain ``value`` environment variables of a Deployment's main container."""
        (obj,) = self.find("Deployment", f"{self.fullname}-{deployment}")
        container = obj["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def apply_objects(cluster: KubeCluster, objects: list[dict[str, Any]]) -> None:
    """Server-side apply ``objects`` as the admin."""
    if objects:
        kubectl(cluster, "apply", "--server-side", "--force-conflicts",
                "--field-manager=longtask-deploy-tests", "-f", "-",
                stdin=yaml.safe_dump_all(objects))


def clean_env(**extra: str) -> dict[str, str]:
    """A minimal process environment: no variables of the test run leak in."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
    return {**keep, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", **extra}


def popen(argv: list[str | Path], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own session, output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen([str(a) for a in argv], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd="/tmp")


# --------------------------------------------------------------------------- built images

# The image tools come from Debian's packages (hack/install-system-deps.sh).
IMAGE_TOOLS = ("buildah", "podman", "runc", "mmdebstrap")
IMAGE_KINDS = ("runner", "operator")
# Explicit limits for every container the tests start (podman's default of 1048576 open
# files is more than an unprivileged sandbox may grant).
CONTAINER_LIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
_BUILD_LINE = re.compile(
    r"^image (?P<kind>\S+) (?P<tag>\S+) size (?P<size>[\d.]+) ?(?P<unit>[kMG]?B) "
    r"built in (?P<seconds>[\d.]+) s archive (?P<archive>\S+)$", re.MULTILINE)
_UNITS = {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}


def require_image_tools() -> None:
    """Fail the test (never skip) with the install command when an image tool is missing."""
    missing = [t for t in IMAGE_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run hack/install-system-deps.sh as root "
                    "(Debian's buildah, podman, runc, mmdebstrap)", pytrace=False)


@dataclass(frozen=True)
class BuiltImage:
    """One image as ``hack/build-images.sh`` reported it: size in MB (uncompressed layers),
    seconds of a cold build (empty storage) and of the cached build right after it."""

    kind: str
    tag: str
    size_mb: float
    cold_seconds: float
    cached_seconds: float
    archive: Path


def parse_build_output(text: str) -> dict[str, tuple[str, float, float, Path]]:
    """``{kind: (tag, size MB, seconds, archive)}`` from ``hack/build-images.sh``'s lines."""
    return {m["kind"]: (m["tag"], float(m["size"]) * _UNITS[m["unit"]], float(m["seconds"]),
                        Path(m["archive"]))
            for m in _BUILD_LINE.finditer(text)}


@dataclass
class Podman:
    """podman on a private storage (``root``, ``runroot``), with runc (crun refuses hybrid
    cgroup set-ups) and no systemd or journald (cgroupfs, events in a file)."""

    root: Path
    runroot: Path
    driver: str = "overlay"

    def argv(self, *args: str | Path) -> list[str]:
        """The full command line of ``podman ARGS`` on this storage."""
        return ["podman", "--root", str(self.root), "--runroot", str(self.runroot),
                "--storage-driver", self.driver, "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", "--tmpdir", str(self.runroot / "libpod"),
                *map(str, args)]

    def __call__(self, *args: str | Path, check: bool = True, timeout: float = 120,
                 stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS``; with ``check`` an ``AssertionError`` carrying its output."""
        return run(self.argv(*args), check=check, timeout=timeout, stdin=stdin)

    def run_image(self, image: str, *args: str | Path, options: Sequence[str] = (),
                  check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``podman run --rm`` of ``image`` with runc, the explicit limits and no network
        unless ``options`` give one."""
        network = () if any(o.startswith("--network") for o in options) else ("--network", "none")
        return self("run", "--rm", "--runtime", "runc", *CONTAINER_LIMITS, *network, *options,
                    image, *args, check=check, timeout=timeout)

    def inspect(self, image: str) -> dict[str, Any]:
        """``podman image inspect`` of ``image``: its config, labels, size."""
        info: list[dict[str, Any]] = json.loads(self("image", "inspect", image).stdout)
        return info[0]

    def remove_storage(self) -> None:
        """Remove every container, unmount what is still mounted under the storage, and
        delete it."""
        self("rm", "--all", "--force", "--time", "0", check=False, timeout=120)
        run(["buildah", "--root", self.root, "--runroot", self.runroot, "--storage-driver",
             self.driver, "rm", "--all"], check=False, timeout=120)
        for base in (self.root, self.runroot):
            for point in sorted(_mounts_under(base), reverse=True):
                subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        for base in (self.root, self.runroot):
            shutil.rmtree(base, ignore_errors=True)


def short_runroot() -> Path:
    """A new folder for podman's run-time state: under /tmp, since podman refuses a runroot
    path longer than 50 characters (pytest's temporary folders are longer)."""
    return Path(tempfile.mkdtemp(prefix="longtask-run-", dir="/tmp"))


def _mounts_under(base: Path) -> list[str]:
    prefix = str(base.resolve()) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return points


@dataclass
class Images:
    """Both images, built once per session by ``hack/build-images.sh`` into private storage."""

    podman: Podman
    built: dict[str, BuiltImage]

    def tag(self, kind: str) -> str:
        """``localhost/longtask/<kind>:<version>``."""
        return self.built[kind].tag

    def report(self) -> list[str]:
        """One line per image: size, cold and cached build time."""
        return [f"image {b.kind:8} {b.tag}: {b.size_mb:6.0f} MB, built cold in "
                f"{b.cold_seconds:5.1f} s, cached in {b.cached_seconds:5.1f} s"
                for b in self.built.values()]


# What Kubernetes gives a pod between SIGTERM and SIGKILL, in seconds: the runner Jobs'
# grace period (OperatorSettings.termination_grace_seconds), also every pod's default.
GRACE_SECONDS: int = OperatorSettings.model_fields["termination_grace_seconds"].default


class Containers:
    """Containers a test starts detached with ``podman`` on the host's network (so they
    reach the test's servers on loopback); ``remove_all`` kills and removes them."""

    def __init__(self, podman: Podman) -> None:
        self.podman = podman
        self.names: list[str] = []

    def start(self, image: str, *args: str, options: Sequence[str] = ()) -> str:
        """``podman run --detach`` of ``image`` with runc and the explicit limits; the
        container's name."""
        name = f"lt-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        self.podman("run", "--detach", "--name", name, "--runtime", "runc", "--network",
                    "host", *CONTAINER_LIMITS, *options, image, *args)
        return name

    def logs(self, name: str) -> str:
        """The container's output so far (its last 4000 characters)."""
        out = self.podman("logs", name, check=False)
        return (out.stdout + out.stderr)[-4000:]

    def state(self, name: str) -> str:
        """``running``, ``exited``, ..."""
        return self.podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()

    def stop_pid1(self, name: str, grace: float = GRACE_SECONDS) -> tuple[int, float]:
        """SIGTERM to the container's PID 1, as the kubelet sends it; ``(exit code, seconds
        to exit)``. Fails the test when it still runs after ``grace`` seconds."""
        started = time.monotonic()
        self.podman("kill", "--signal", "TERM", name)
        try:
            waited = self.podman("wait", name, timeout=grace)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} still running {grace} s after SIGTERM:\n{self.logs(name)}")
        return int(waited.stdout.split()[-1]), time.monotonic() - started

    def wait_http_ok(self, name: str, url: str, timeout: float = 90) -> None:
        """Wait until ``url`` answers 200; fails the test with the container's log when it
        exits first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=3) as response:
                    if response.status == 200:
                        return
            except OSError:  # refused, reset, or an HTTPError (a URLError is an OSError)
                pass
            state = self.state(name)
            if state != "running":
                pytest.fail(f"{name} is {state} before {url} answered:\n{self.logs(name)}")
            time.sleep(0.5)
        pytest.fail(f"{url} did not answer 200 in {timeout:.0f} s:\n{self.logs(name)}")

    def healthcheck(self, name: str) -> subprocess.CompletedProcess[str]:
        """The image's HEALTHCHECK command run once in the container (``podman healthcheck
        run``; exit 0 when healthy)."""
        return self.podman("healthcheck", "run", name, check=False, timeout=30)

    def remove_all(self) -> None:
        """Kill and remove every container started here."""
        for name in self.names:
            self.podman("rm", "--force", "--time", "0", name, check=False)
