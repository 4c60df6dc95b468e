"""Fixtures of the deployment checks: the chart's RBAC applied, and image environments.

``chart_release``: the chart rendered for the test's namespace and its identities
(ServiceAccounts, Roles, bindings, kopf's peering object) applied to the local control
plane; the other objects are returned for the test to use as it needs.

``image_env``: ``image_env("runner" | "operator") -> venv``: a virtual environment made by
``requirements/install.sh``, the same script and requirements the Dockerfiles run. The
dependencies are installed once per requirements hash into a cache outside git
(``$XDG_CACHE_HOME/longtask/image-envs``); the project's wheel is built from the working
tree each session and installed into it when it differs from the one there.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import CHART, RBAC_KINDS, REPO, Release, apply_objects, render, run

from devcluster.kube import KubeCluster

IMAGE_REQUIREMENTS = {"runner": "runner.txt", "operator": "operator.txt"}
# What the build stage's context holds for the wheel (.dockerignore lets it through):
# pyproject.toml, README.md and the package folders pyproject.toml maps.
PACKAGE_DIRS = sorted(set(tomllib.loads((REPO / "pyproject.toml").read_text())
                          ["tool"]["setuptools"]["package-dir"].values()))
WHEEL_SOURCES = ("pyproject.toml", "README.md", *PACKAGE_DIRS)


@pytest.fixture(scope="session")
def chart_crds(apply_crds: Callable[..., list[str]], project_crds: list[str]) -> list[str]:
    """The LongTask CRD and kopf's peering CRDs (the chart's crds/ folder), Established."""
    return [*project_crds, *apply_crds(CHART / "crds")]


@pytest.fixture
def chart_release(kube_cluster: KubeCluster, kube_namespace: str,
                  chart_crds: list[str]) -> Release:
    """The default install rendered for the test's namespace; its ServiceAccounts, Roles,
    RoleBindings and KopfPeering applied."""
    objects = render(namespace=kube_namespace, release="lt")
    applied = [o for o in objects if o["kind"] in (*RBAC_KINDS, "KopfPeering")
               and "helm.sh/hook" not in o["metadata"].get("annotations", {})]
    apply_objects(kube_cluster, applied)
    return Release(kube_namespace, "lt", objects)


# --------------------------------------------------------------------------- image envs


def _cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "longtask" / "image-envs"


def _key(kind: str) -> str:
    digest = hashlib.sha256()
    for name in (IMAGE_REQUIREMENTS[kind], "build.txt", "install.sh"):
        digest.update((REPO / "requirements" / name).read_bytes())
    digest.update(sys.version.split()[0].encode())
    return f"{kind}-{digest.hexdigest()[:16]}"


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built by requirements/install.sh from a copy of what the
    Dockerfiles copy (so a file they leave out is missing here too)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in WHEEL_SOURCES:
        path = REPO / name
        if not path.exists():
            continue  # README.md is optional to the build
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore, symlinks=False)
        else:
            shutil.copy2(path, source / name)
    wheels = work / "wheels"
    run([REPO / "requirements" / "install.sh", "wheel", source, wheels],
        env={"PYTHON": sys.executable}, timeout=300)
    return wheels


def _wheel_identity(wheels: Path) -> str:
    """The sha256 of the project wheel's RECORD (the hashes of every file it holds): equal
    for wheels built from the same tree, whatever their zip timestamps."""
    import zipfile

    (wheel,) = wheels.glob("longtask-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        return hashlib.sha256(archive.read(record)).hexdigest()


@pytest.fixture(scope="session")
def image_env(project_wheel: Path) -> Iterator[Callable[[str], Path]]:
    """``image_env(kind) -> venv folder`` with the image's dependencies and this tree's
    wheel. Sessions that test the same wheel share an environment (a shared lock held for
    the session); one with another wheel waits for them, then installs its own."""
    locks: list[Any] = []
    ready: dict[str, Path] = {}
    identity = _wheel_identity(project_wheel)

    def get(kind: str) -> Path:
        if kind in ready:
            return ready[kind]
        root = _cache_root() / _key(kind)
        root.mkdir(parents=True, exist_ok=True)
        lock = (root / ".lock").open("w")
        locks.append(lock)
        venv, complete, installed = root / "venv", root / ".complete", root / ".wheel"
        fcntl.flock(lock, fcntl.LOCK_SH)
        current = installed.read_text() if installed.exists() else ""
        if not complete.exists() or current != identity:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not complete.exists():
                shutil.rmtree(venv, ignore_errors=True)
                installed.unlink(missing_ok=True)
                # The interpreter the images use: Python 3.11 (the base image's minor).
                run([REPO / "requirements" / "install.sh", "deps", venv,
                     REPO / "requirements" / IMAGE_REQUIREMENTS[kind]],
                    env={"PYTHON": sys.executable}, timeout=600)
                complete.touch()
            run([REPO / "requirements" / "install.sh", "project", venv, project_wheel],
                timeout=300)
            installed.write_text(identity)
            fcntl.flock(lock, fcntl.LOCK_SH)
        ready[kind] = venv
        return venv

    try:
        yield get
    finally:
        for lock in locks:
            lock.close()
