"""Helpers of the deployment checks: the tools, rendering the chart, kubectl, identities.

helm and hadolint come from ``hack/install-tools.sh`` (``make tools``), built into a cache
outside git; when they are missing the tests fail with that command, they never skip.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

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
