"""Fixtures of the deployment checks: the chart's RBAC applied, and the images built.

``chart_release``: the chart rendered for the test's namespace and its identities
(ServiceAccounts, Roles, bindings) applied to the local control plane; the other objects
are returned for the test to use as it needs.

``built_images``: both images built once per session by ``hack/build-images.sh`` into
private storage under the session's temporary folder (cold: nothing cached but the base
image of hack/base-image.sh, which is made when its cache does not match), then built again
(cached), their figures printed at the end of the run; the storage is removed afterwards.
``podman`` (the session's private podman) runs them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import (
    RBAC_KINDS,
    REPO,
    BuiltImage,
    Containers,
    Images,
    Podman,
    Release,
    apply_objects,
    parse_build_output,
    render,
    require_image_tools,
    run,
    short_runroot,
)

from devcluster.kube import KubeCluster

# Seconds: a cold build of both images (PyPI and the Debian mirror through the network) and
# the cached one right after it.
COLD_BUILD_TIMEOUT = 1200
CACHED_BUILD_TIMEOUT = 300
_REPORT: list[str] = []


@pytest.fixture(scope="session")
def chart_crds(project_crds: list[str]) -> list[str]:
    """The LongTask CRD (crds/, the one the chart renders too), Established."""
    return project_crds


@pytest.fixture
def chart_release(kube_cluster: KubeCluster, kube_namespace: str,
                  chart_crds: list[str]) -> Release:
    """The default install rendered for the test's namespace; its ServiceAccounts, Roles
    and RoleBindings applied."""
    objects = render(namespace=kube_namespace, release="lt")
    applied = [o for o in objects if o["kind"] in RBAC_KINDS
               and "helm.sh/hook" not in o["metadata"].get("annotations", {})]
    apply_objects(kube_cluster, applied)
    return Release(kube_namespace, "lt", objects)


# --------------------------------------------------------------------------- images


@pytest.fixture(scope="session")
def built_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """Both images, built cold then cached into a private storage; removed afterwards."""
    require_image_tools()
    work = tmp_path_factory.mktemp("images")
    driver = os.environ.get("LONGTASK_IMAGE_STORAGE_DRIVER", "overlay")
    podman = Podman(work / "storage" / "root", short_runroot(), driver)
    argv: list[str | Path] = [REPO / "hack" / "build-images.sh", "--root", podman.root, "--runroot",
            podman.runroot, "--storage-driver", driver, "--out", work / "archives"]
    try:
        started = time.monotonic()
        cold = run(argv, timeout=COLD_BUILD_TIMEOUT)
        cold_total = time.monotonic() - started
        started = time.monotonic()
        cached = run(argv, timeout=CACHED_BUILD_TIMEOUT)
        cached_total = time.monotonic() - started
        first, second = parse_build_output(cold.stdout), parse_build_output(cached.stdout)
        assert set(first) == set(second) == {"runner", "operator"}, cold.stdout + cached.stdout
        built = {kind: BuiltImage(kind, tag, size, seconds, second[kind][2], archive)
                 for kind, (tag, size, seconds, archive) in first.items()}
        images = Images(podman, built)
        base = re.search(r"python-base:\S+: .* made in (\d+) s", cold.stderr)
        _REPORT[:] = [*images.report(),
                      f"hack/build-images.sh in all: cold {cold_total:.0f} s (base image "
                      f"{'made in ' + base.group(1) + ' s' if base else 'from its cache'}), "
                      f"cached {cached_total:.0f} s"]
        print("\n" + "\n".join(_REPORT))
        yield images
    finally:
        podman.remove_storage()
        shutil.rmtree(work / "archives", ignore_errors=True)


@pytest.fixture(scope="session")
def podman(built_images: Images) -> Podman:
    """podman on the storage that holds the session's images."""
    return built_images.podman


@pytest.fixture
def containers(podman: Podman) -> Iterator[Containers]:
    """Containers the test starts detached; killed and removed after the test."""
    started = Containers(podman)
    yield started
    started.remove_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The images' sizes and build times, when this session built them."""
    if _REPORT:
        terminalreporter.section("images built")
        for line in _REPORT:
            terminalreporter.write_line(line)
