"""RBAC is enforced: service accounts get exactly what their roles grant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.kube import KubeCluster, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def service_account(core_v1: Any, kube_namespace: str) -> str:
    core_v1.create_namespaced_service_account(kube_namespace, {"metadata": {"name": "worker"}})
    return "worker"


@pytest.fixture
def as_service_account(kube_cluster: KubeCluster, kube_namespace: str,
                       service_account: str) -> Iterator[Any]:
    """A CoreV1Api that impersonates the test's service account."""
    api = kube_cluster.api_client()
    api.set_default_header("Impersonate-User",
                           f"system:serviceaccount:{kube_namespace}:{service_account}")
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


def status_of(call: Any) -> int:
    """The HTTP status of ``call()`` (made with ``_preload_content=False``)."""
    try:
        _ = call().data
    except ApiException as err:
        return int(err.status)
    return 200


def test_a_service_account_without_a_role_is_refused_with_403(
        as_service_account: Any, kube_namespace: str) -> None:
    status = status_of(lambda: as_service_account.list_namespaced_config_map(
        kube_namespace, _preload_content=False))

    assert status == 403, f"expected 403 Forbidden, got {status}"


def test_a_service_account_gets_what_its_role_grants_and_nothing_else(
        as_service_account: Any, rbac_v1: Any, kube_namespace: str,
        service_account: str) -> None:
    rbac_v1.create_namespaced_role(kube_namespace, {
        "metadata": {"name": "read-config"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})
    rbac_v1.create_namespaced_role_binding(kube_namespace, {
        "metadata": {"name": "read-config"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "read-config"},
        "subjects": [{"kind": "ServiceAccount", "name": service_account,
                      "namespace": kube_namespace}]})

    def list_configmaps() -> int:
        return status_of(lambda: as_service_account.list_namespaced_config_map(
            kube_namespace, _preload_content=False))

    wait_for(lambda: list_configmaps() == 200, timeout=10,
             what="the role binding to allow listing config maps")
    secrets_status = status_of(lambda: as_service_account.list_namespaced_secret(
        kube_namespace, _preload_content=False))
    assert secrets_status == 403, f"listing secrets should stay forbidden, got {secrets_status}"


def test_a_service_account_token_authenticates_as_that_account(
        kube_cluster: KubeCluster, core_v1: Any, kube_namespace: str,
        service_account: str) -> None:
    token = core_v1.create_namespaced_service_account_token(
        service_account, kube_namespace,
        {"spec": {"audiences": [], "expirationSeconds": 600}}).status.token
    configuration = client.Configuration(host=kube_cluster.server,
                                         ssl_ca_cert=str(kube_cluster.ca_file),
                                         api_key={"authorization": f"Bearer {token}"})
    with client.ApiClient(configuration) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})

    assert review.status.user_info.username == (
        f"system:serviceaccount:{kube_namespace}:{service_account}")
