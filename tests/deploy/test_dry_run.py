"""Every rendering of the chart is accepted by a real API server of the pinned release.

A server-side dry run (``kubectl apply --server-side --dry-run=server --validate=strict``)
runs the API server's full validation and admission on each object: the OpenAPI schemas of
the pinned Kubernetes release (the LongTask CRD is one of the objects), unknown fields
refused, and nothing stored. No schema is downloaded: the server is the reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import CI_VALUES, kubectl, render

from devcluster.kube import KubeCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

RELEASE_NAMESPACE = "longtask-ci"
# The namespaces the ci/ values files name.
OTHER_NAMESPACES = ("longtask-ci-team-a", "longtask-ci-team-b")


@pytest.fixture(scope="module")
def namespaces(core_v1: Any, chart_crds: list[str]) -> Iterator[tuple[str, ...]]:
    """The release namespace and the ones the values files name, made for this module."""
    names = (RELEASE_NAMESPACE, *OTHER_NAMESPACES)
    for name in names:
        core_v1.create_namespace({"metadata": {"name": name}})
    try:
        yield names
    finally:
        for name in names:
            core_v1.delete_namespace(name, propagation_policy="Background")


@pytest.mark.parametrize("values", [None, *CI_VALUES],
                         ids=lambda v: v.name.removesuffix("-values.yaml") if v else "default")
def test_the_api_server_accepts_every_object_of_the_rendering(
        values: Path | None, kube_cluster: KubeCluster, namespaces: tuple[str, ...]) -> None:
    objects = render([values] if values else [], namespace=RELEASE_NAMESPACE,
                     extra=["--include-crds"])
    # A pod's ServiceAccount must exist for its admission (the helm test pod's is created by
    # the same install): make the ServiceAccounts for real first.
    accounts = [o for o in objects if o["kind"] == "ServiceAccount"]
    kubectl(kube_cluster, "apply", "--server-side", "--field-manager=longtask-chart-check",
            "-f", "-", stdin=yaml.safe_dump_all(accounts))

    result = kubectl(kube_cluster, "apply", "--server-side", "--dry-run=server",
                     "--validate=strict", "--force-conflicts",
                     "--field-manager=longtask-chart-check", "-f", "-",
                     stdin=yaml.safe_dump_all(objects), check=False)

    assert result.returncode == 0, f"refused:\n{result.stderr}"
    accepted = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(objects), (
        f"{len(objects)} objects rendered, {len(accepted)} accepted:\n{result.stdout}")
