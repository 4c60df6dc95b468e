"""A kopf operator can log in to the local control plane and handle objects there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner

from devcluster.kube import wait_for
from devcluster.pytest_fixtures import raw

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

HANDLERS = """
import kopf

@kopf.on.create("", "v1", "configmaps", labels={"longtask.dev/kopf-test": "yes"})
def mark(patch, **_):
    patch.metadata.annotations["longtask.dev/seen-by"] = "kopf"
"""


def test_a_kopf_handler_reacts_to_a_new_object(
        kubeconfig_env: Path, core_v1: Any, kube_namespace: str, tmp_path: Path) -> None:
    handlers = tmp_path / "handlers.py"
    handlers.write_text(HANDLERS)

    def annotation() -> str | None:
        obj = raw(core_v1.read_namespaced_config_map("watched", kube_namespace,
                                                     _preload_content=False))
        value: str | None = (obj["metadata"].get("annotations") or {}).get(
            "longtask.dev/seen-by")
        return value

    with KopfRunner(["run", "--standalone", "--namespace", kube_namespace, str(handlers)],
                    timeout=60) as runner:
        core_v1.create_namespaced_config_map(kube_namespace, {"metadata": {
            "name": "watched", "labels": {"longtask.dev/kopf-test": "yes"}}})
        seen = wait_for(annotation, timeout=30, what="the kopf handler's annotation")

    assert seen == "kopf"
    assert runner.exit_code == 0, f"kopf exited with {runner.exit_code}: {runner.output}"
