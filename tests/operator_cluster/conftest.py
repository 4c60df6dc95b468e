"""Fixtures of the operator's control-plane tests.

Per test: a fresh namespace holding the runner's database Secret and ServiceAccount, a fresh
migrated database with one organization, and the operator as a real process watching that
namespace; the operator and the runner pods log in with their own database
roles. The cluster (and the CRDs) are the session's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import operator_support as s
import psycopg2.extensions
import pytest

from devcluster.kube import KubeCluster


@pytest.fixture
def namespace(kube_namespace: str, core_v1: Any, runner_db_url: str,
              project_crds: list[str]) -> str:
    """The test's namespace, with the runner's database Secret (its own role's URL) and
    ServiceAccount (the chart makes both in a real install)."""
    core_v1.create_namespaced_secret(kube_namespace, {
        "metadata": {"name": "longtask-database"}, "stringData": {"url": runner_db_url}})
    core_v1.create_namespaced_service_account(kube_namespace, {
        "metadata": {"name": "longtask-runner"}, "automountServiceAccountToken": False})
    return kube_namespace


@pytest.fixture
def org(db: psycopg2.extensions.connection) -> int:
    """The id of organization ``acme`` in the test's database."""
    return s.create_org(db)


@pytest.fixture
def karnataka(real_data: Path) -> bytes:
    """The real Karnataka village file (14,859 rows, some village codes repeated)."""
    return (real_data / s.KARNATAKA).read_bytes()


@pytest.fixture
def villages(db: psycopg2.extensions.connection, db_url: str, org: int,
             karnataka: bytes) -> Any:
    """``villages(form) -> file id``: a village form named ``form`` and the stored file."""
    header = karnataka.split(b"\n", 1)[0].decode().split(",")
    stored: list[Any] = []

    def make(form: str) -> Any:
        s.create_village_form(db, org, form, header)
        if not stored:
            stored.append(s.store_file(db_url, karnataka, s.KARNATAKA))
        return stored[0]

    return make


@pytest.fixture
def tasks(kube_cluster: KubeCluster, custom_objects: Any, core_v1: Any, batch_v1: Any,
          namespace: str) -> Iterator[s.Tasks]:
    """LongTasks in the test's namespace; their finalizers are stripped afterwards."""
    helper = s.Tasks(kube_cluster, custom_objects, core_v1, batch_v1, namespace)
    try:
        yield helper
    finally:
        helper.release_all()


@pytest.fixture
def operator_process(kube_cluster: KubeCluster, namespace: str, operator_db_url: str,
                     tasks: s.Tasks, tmp_path: Path) -> Iterator[s.OperatorProcess]:
    """The operator as its own database role, started and ready (liveness probe
    answering); stopped afterwards, before the finalizers are stripped."""
    proc = s.OperatorProcess(kube_cluster, namespace, operator_db_url,
                             tmp_path / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
