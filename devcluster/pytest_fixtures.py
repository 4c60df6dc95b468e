"""pytest fixtures for tests against the local Kubernetes control plane.

Registered by ``pytest_plugins = ["devcluster.pytest_fixtures"]`` in tests/conftest.py.

- ``kube_cluster`` (session): a :class:`devcluster.kube.KubeCluster`, started on first use
  (bounded by ``LONGTASK_KUBE_START_TIMEOUT`` seconds, default 90) and stopped at the end;
  its node is the real one unless ``LONGTASK_KUBE_NODE=process``. Missing binaries or
  packages fail the test with the command that installs them: cluster tests never skip.
- the runner image the real node runs is built from the checkout once, when the collected
  tests include ``cluster`` ones, before any test runs (a cold build takes minutes, more
  than a test's timeout), and named to subprocesses (the stack, the demo) by
  ``$LONGTASK_KUBE_RUNNER_ARCHIVE``.
- ``pod_image`` (session): the image test pods run their ``python3`` programs from.
- ``kube_api`` (session): an admin ``kubernetes.client.ApiClient``; ``core_v1``,
  ``batch_v1``, ``rbac_v1``, ``apiextensions_v1``, ``custom_objects`` wrap it.
- ``kubeconfig_env``: ``$KUBECONFIG`` (and the client library's default) set to the admin
  kubeconfig for the test, for code that logs in by itself (kopf's ``KopfRunner``).
- ``kube_namespace``: a fresh namespace per test (its ``default`` service account exists),
  deleted after the test.
- ``apply_crds``: ``apply_crds(folder=crds/) -> [names]``, server-side applies the CRDs and
  waits until they are Established; ``project_crds`` (session) applies crds/ once.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import kube

_IMAGE_ERRORS: list[str] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the runner image (:func:`devcluster.images.runner_image`) when a collected test
    is marked ``cluster`` and the node is the real one; a failure is kept for
    ``kube_cluster`` to report."""
    from devcluster import images

    wants = any(item.get_closest_marker("cluster") for item in session.items)
    if not wants or kube.node_kind() != "real" or os.environ.get(images.RUNNER_ARCHIVE_ENV):
        return
    try:
        built = images.runner_image()
    except images.ImageBuildError as err:
        _IMAGE_ERRORS.append(str(err))
        return
    os.environ[images.RUNNER_ARCHIVE_ENV] = str(built.path)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[kube.KubeCluster]:
    """The session's cluster (etcd, apiserver, controller-manager, and the real node or
    the process kubelet)."""
    from devcluster import images, node

    if _IMAGE_ERRORS:
        pytest.fail(f"the runner image did not build: {_IMAGE_ERRORS[0]}", pytrace=False)
    timeout = float(os.environ.get("LONGTASK_KUBE_START_TIMEOUT", "90"))
    try:
        cluster = kube.start(timeout=timeout)
    except (kube.KubeBinariesMissing, node.NodeDepsMissing, images.ImageBuildError) as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pod_image(kube_cluster: kube.KubeCluster) -> str:
    """An image the session's node has, whose ``python3`` runs a test's program (pods set
    ``imagePullPolicy: Never``: nothing is pulled)."""
    return kube_cluster.pod_image


@pytest.fixture(scope="session")
def kube_api(kube_cluster: kube.KubeCluster) -> Iterator[Any]:
    """An admin (system:masters) ``kubernetes.client.ApiClient``."""
    api = kube_cluster.api_client()
    try:
        yield api
    finally:
        with contextlib.suppress(AttributeError):
            api.close()


@pytest.fixture(scope="session")
def core_v1(kube_api: Any) -> Any:
    """``kubernetes.client.CoreV1Api`` as the admin."""
    from kubernetes import client
    return client.CoreV1Api(kube_api)


@pytest.fixture(scope="session")
def batch_v1(kube_api: Any) -> Any:
    """``kubernetes.client.BatchV1Api`` as the admin."""
    from kubernetes import client
    return client.BatchV1Api(kube_api)


@pytest.fixture(scope="session")
def rbac_v1(kube_api: Any) -> Any:
    """``kubernetes.client.RbacAuthorizationV1Api`` as the admin."""
    from kubernetes import client
    return client.RbacAuthorizationV1Api(kube_api)


@pytest.fixture(scope="session")
def apiextensions_v1(kube_api: Any) -> Any:
    """``kubernetes.client.ApiextensionsV1Api`` as the admin."""
    from kubernetes import client
    return client.ApiextensionsV1Api(kube_api)


@pytest.fixture(scope="session")
def custom_objects(kube_api: Any) -> Any:
    """``kubernetes.client.CustomObjectsApi`` as the admin."""
    from kubernetes import client
    return client.CustomObjectsApi(kube_api)


@pytest.fixture
def kubeconfig_env(kube_cluster: kube.KubeCluster,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$KUBECONFIG`` and the client library's default at the admin kubeconfig.

    For code that logs in by itself in this process (kopf's ``KopfRunner``,
    ``kubernetes.config.load_kube_config()``): the library reads ``$KUBECONFIG`` once, at
    import time. Both are restored after the test. Returns the kubeconfig path.
    """
    from kubernetes.config import kube_config

    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION",
                        str(kube_cluster.kubeconfig))
    return kube_cluster.kubeconfig


@pytest.fixture
def kube_namespace(request: pytest.FixtureRequest, core_v1: Any) -> Iterator[str]:
    """A new namespace named after the test; deleted (in the background) afterwards."""
    from kubernetes.client.exceptions import ApiException

    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    core_v1.create_namespace({"metadata": {"name": name,
                                           "labels": {"longtask.dev/test": "true"}}})

    def has_default_sa() -> bool:
        try:
            raw(core_v1.read_namespaced_service_account("default", name,
                                                        _preload_content=False))
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    kube.wait_for(has_default_sa, timeout=30, what=f"service account default in {name}")
    try:
        yield name
    finally:
        try:
            raw(core_v1.delete_namespace(name, propagation_policy="Background",
                                         _preload_content=False))
        except ApiException as err:
            if err.status != 404:
                raise


@pytest.fixture(scope="session")
def apply_crds(kube_api: Any) -> Callable[..., list[str]]:
    """``apply_crds(folder=Path("crds"), timeout=30) -> [crd names]``, all Established."""
    def apply(folder: Path = kube.REPO / "crds", timeout: float = 30.0) -> list[str]:
        return kube.apply_crds(kube_api, folder, timeout=timeout)
    return apply


@pytest.fixture(scope="session")
def project_crds(apply_crds: Callable[..., list[str]]) -> list[str]:
    """The project's CRDs (crds/*.yaml), applied once per session; their names."""
    return apply_crds()


# --------------------------------------------------------------------------- helpers


def raw(response: Any) -> dict[str, Any]:
    """The JSON body of a call made with ``_preload_content=False``."""
    import json
    data: dict[str, Any] = json.loads(response.data)
    return data


def job_pods(core_v1: Any, namespace: str, job: str) -> list[str]:
    """Names of the pods that exist for Job ``job`` (terminating ones included)."""
    pods = raw(core_v1.list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={job}",
        _preload_content=False))
    return sorted(p["metadata"]["name"] for p in pods.get("items") or [])


def job_condition(batch_v1: Any, namespace: str, job: str,
                  kind: str) -> dict[str, Any] | None:
    """Condition ``kind`` (e.g. "Complete", "Suspended") of a Job as JSON, or None."""
    obj = raw(batch_v1.read_namespaced_job(job, namespace, _preload_content=False))
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            found: dict[str, Any] = cond
            return found
    return None


def pod_json(core_v1: Any, namespace: str, pod: str) -> dict[str, Any] | None:
    """The pod as JSON, or None when it does not exist."""
    from kubernetes.client.exceptions import ApiException
    try:
        return raw(core_v1.read_namespaced_pod(pod, namespace, _preload_content=False))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
