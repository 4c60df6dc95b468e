"""kubectl works against the local control plane: get, apply, and a scripted edit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devcluster.kube import KubeCluster
from devcluster.pytest_fixtures import raw

pytestmark = pytest.mark.cluster

KUBECTL = "/usr/bin/kubectl"


def kubectl(cluster: KubeCluster, *args: str, editor: str | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **cluster.env()}
    if editor:
        env["KUBE_EDITOR"] = editor
    result = subprocess.run([KUBECTL, *args], env=env, input=stdin, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
    return result


def config_map_yaml(ns: str, value: str) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n"
            f"  namespace: {ns}\ndata:\n  mode: {value}\n")


def test_kubectl_get_lists_the_node(kube_cluster: KubeCluster) -> None:
    result = kubectl(kube_cluster, "get", "nodes", "-o", "name")

    assert result.stdout.split() == ["node/longtask-node"]


def test_kubectl_apply_creates_then_updates_an_object(
        kube_cluster: KubeCluster, core_v1: Any, kube_namespace: str) -> None:
    kubectl(kube_cluster, "apply", "-f", "-", stdin=config_map_yaml(kube_namespace, "slow"))
    kubectl(kube_cluster, "apply", "-f", "-", stdin=config_map_yaml(kube_namespace, "fast"))

    stored = raw(core_v1.read_namespaced_config_map("settings", kube_namespace,
                                                    _preload_content=False))
    assert stored["data"] == {"mode": "fast"}


def test_kubectl_edit_saves_the_change_its_editor_makes(
        kube_cluster: KubeCluster, core_v1: Any, kube_namespace: str, tmp_path: Path) -> None:
    kubectl(kube_cluster, "apply", "-f", "-", stdin=config_map_yaml(kube_namespace, "slow"))
    editor = tmp_path / "editor.py"
    editor.write_text("import pathlib, sys\n"
                      "p = pathlib.Path(sys.argv[1])\n"
                      "p.write_text(p.read_text().replace('mode: slow', 'mode: paused'))\n")

    kubectl(kube_cluster, "edit", "configmap", "settings", "-n", kube_namespace,
            editor=f"{sys.executable} {editor}")

    stored = raw(core_v1.read_namespaced_config_map("settings", kube_namespace,
                                                    _preload_content=False))
    assert stored["data"] == {"mode": "paused"}
