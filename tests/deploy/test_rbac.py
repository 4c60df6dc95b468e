"""Least privilege, proven on the local control plane with the chart's own RBAC objects.

Each identity is a ServiceAccount the chart makes, impersonated
(``system:serviceaccount:<ns>:<sa>``). For every resource and verb that matters the server
is asked whether the identity may: the answers must be exactly the rules each component
needs (the calls of operator/kube.py and operator/leader.py, kopf's own, and api/kube.py).
Then the components' own client code is run as those identities: what they call works,
what they don't is 403.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from deploy_support import RBAC_KINDS, Release, apply_objects, kubectl, render
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection.electionconfig import Config
from kubernetes.leaderelection.leaderelection import LeaderElection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock
from longtask.api.kube import KubeError
from longtask.api.kube import Tasks as ApiTasks
from longtask.operator.kube import Kube as OperatorKube
from longtask.operator.leader import LeaseApi

from devcluster.kube import KubeCluster
from longtask.constants import API_VERSION, GROUP, KIND, LABEL_MODE, LABEL_TASK_UID, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# (api group, resource) pairs asked about: what the components use and what they must not.
RESOURCES = (
    (GROUP, PLURAL), (GROUP, f"{PLURAL}/status"), (GROUP, f"{PLURAL}/finalizers"),
    ("batch", "jobs"), ("batch", "jobs/status"), ("", "pods"), ("", "pods/exec"),
    ("", "pods/log"), ("", "events"), ("events.k8s.io", "events"), ("", "secrets"),
    ("", "configmaps"), ("", "serviceaccounts"), ("", "serviceaccounts/token"),
    ("", "namespaces"), ("apps", "deployments"), ("coordination.k8s.io", "leases"),
    ("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings"),
    ("apiextensions.k8s.io", "customresourcedefinitions"), ("kopf.dev", "kopfpeerings"),
    ("kopf.dev", "clusterkopfpeerings"),
)
Grants = set[tuple[str, str, str]]

OPERATOR: Grants = {
    *((GROUP, PLURAL, v) for v in ("get", "list", "watch", "patch")),
    (GROUP, f"{PLURAL}/status", "patch"),
    (GROUP, f"{PLURAL}/finalizers", "update"),
    *(("batch", "jobs", v) for v in ("get", "list", "watch", "create", "patch", "delete")),
    ("", "pods", "list"),
    ("", "events", "create"),
}
# In the release namespace only: making the Lease. Reading and renewing it are granted by
# name, which a review without a name does not show (see the Lease tests below).
LEASE: Grants = {("coordination.k8s.io", "leases", "create")}
API: Grants = {
    *((GROUP, PLURAL, v) for v in ("get", "list", "watch", "create", "patch", "delete")),
    ("", "events", "list"), ("", "events", "create"),
}


def impersonating(cluster: KubeCluster, namespace: str, service_account: str) -> Any:
    """An ``ApiClient`` that acts as ``system:serviceaccount:<namespace>:<sa>``."""
    api = cluster.api_client()
    api.set_default_header("Impersonate-User",
                           f"system:serviceaccount:{namespace}:{service_account}")
    return api


def granted(api: Any, namespace: str | None) -> Grants:
    """Every (group, resource, verb) of RESOURCES x VERBS the identity may use in
    ``namespace`` (or cluster-wide for None), as the server answers SelfSubjectAccessReviews."""
    authz = client.AuthorizationV1Api(api)
    found: Grants = set()
    for group, resource in RESOURCES:
        name, _, sub = resource.partition("/")
        for verb in VERBS:
            review = authz.create_self_subject_access_review({
                "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {
                    "group": group, "resource": name, "subresource": sub, "verb": verb,
                    **({"namespace": namespace} if namespace else {})}}})
            if review.status.allowed:
                found.add((group, resource, verb))
    return found


def status_of(call: Callable[[], Any]) -> int:
    """The HTTP status ``call`` ends with (200 when it returns)."""
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def diff(got: Grants, want: Grants) -> str:
    return (f"granted but not needed: {sorted(got - want)}; "
            f"needed but not granted: {sorted(want - got)}")


@pytest.fixture
def identities(kube_cluster: KubeCluster, chart_release: Release) -> Iterator[dict[str, Any]]:
    """Impersonating clients of the operator, the API and the runner."""
    apis = {c: impersonating(kube_cluster, chart_release.namespace,
                             chart_release.service_account(c))
            for c in ("operator", "api", "runner")}
    try:
        yield apis
    finally:
        for api in apis.values():
            api.close()


# --------------------------------------------------------------------------- exact grants


def test_each_identity_has_exactly_the_rules_its_component_needs(
        identities: dict[str, Any], chart_release: Release) -> None:
    ns = chart_release.namespace
    operator = granted(identities["operator"], ns)
    api = granted(identities["api"], ns)
    runner = granted(identities["runner"], ns)

    assert operator == OPERATOR | LEASE, diff(operator, OPERATOR | LEASE)
    assert api == API, diff(api, API)
    assert runner == set(), f"the runner may use nothing, yet: {sorted(runner)}"


def test_namespaced_identities_have_nothing_cluster_wide_or_in_other_namespaces(
        identities: dict[str, Any]) -> None:
    for component, api in identities.items():
        cluster_wide = granted(api, None)
        elsewhere = granted(api, "default")

        assert cluster_wide == set(), f"{component} cluster-wide: {sorted(cluster_wide)}"
        assert elsewhere == set(), f"{component} in namespace default: {sorted(elsewhere)}"


def test_the_runner_service_account_mounts_no_token(
        core_v1: Any, chart_release: Release) -> None:
    account = core_v1.read_namespaced_service_account(
        chart_release.service_account("runner"), chart_release.namespace)

    assert account.automount_service_account_token is False


def test_cluster_wide_mode_grants_the_same_rules_in_every_namespace(
        kube_cluster: KubeCluster, kube_namespace: str, chart_crds: list[str]) -> None:
    release = f"cw{secrets.token_hex(3)}"
    objects = render(sets=["watch.clusterWide=true"], namespace=kube_namespace, release=release)
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
    cluster_scoped = [o for o in rbac if o["kind"].startswith("Cluster")]
    apply_objects(kube_cluster, rbac)
    api = impersonating(kube_cluster, kube_namespace, f"{release}-longtask-operator")
    try:
        here, elsewhere = granted(api, kube_namespace), granted(api, "default")
        everywhere = granted(api, None)
    finally:
        api.close()
        for obj in cluster_scoped:
            kubectl(kube_cluster, "delete", obj["kind"].lower(), obj["metadata"]["name"],
                    "--wait=false")

    assert here == OPERATOR | LEASE, diff(here, OPERATOR | LEASE)
    assert elsewhere == OPERATOR, diff(elsewhere, OPERATOR)
    assert everywhere == OPERATOR, diff(everywhere, OPERATOR)


# --------------------------------------------------------------------------- real calls


def longtask_body(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"type": "Export", "organization": "acme",
                     "params": {"since": "2017-08-01"}, "state": "Paused"}}


def test_the_components_calls_work_as_their_identities_and_others_are_refused(
        identities: dict[str, Any], chart_release: Release, custom_objects: Any) -> None:
    ns = chart_release.namespace
    api = ApiTasks(identities["api"], ns, timeout=10)
    operator = OperatorKube(identities["operator"])

    # The API creates, reads, lists and patches a LongTask, and records an Event (it
    # deletes it at the end).
    created = api.create(longtask_body("rbac-check"))
    uid = created["metadata"]["uid"]
    assert api.get("rbac-check") is not None and len(api.list_all()) == 1
    api.ping()
    api.patch("rbac-check", {"metadata": {"annotations": {f"{GROUP}/reason": "rbac test"}}})
    api.post_event(created, reason="RbacChecked", action="Check",
                   message="the API may post Events")
    assert any(e["reason"] == "RbacChecked" for e in api.events(uid))

    # The operator reads it, writes its status, and makes, suspends and deletes its Job.
    task = operator.task(ns, "rbac-check")
    assert task is not None and operator.tasks(ns)
    operator.patch_status(ns, "rbac-check", {"phase": "Paused"})
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "lt-rbac-check-run", "namespace": ns,
                     "labels": {LABEL_TASK_UID: uid, LABEL_MODE: "run"},
                     "ownerReferences": [{"apiVersion": API_VERSION, "kind": KIND,
                                          "name": "rbac-check", "uid": uid,
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"suspend": True, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "runner", "image": "r:1", "command": ["true"]}]}}},
    }
    operator.create_job(job, uid)
    operator.create_job(job, uid)  # AlreadyExists of its own Job is success
    assert operator.get_job(ns, "lt-rbac-check-run") is not None
    assert [j["metadata"]["name"] for j in operator.run_jobs(ns)] == ["lt-rbac-check-run"]
    operator.set_suspend(ns, "lt-rbac-check-run", False)
    assert operator.task_pods(ns, uid) is not None
    operator.post_event(task, "Normal", "RbacChecked", "the operator may post Events")
    operator.delete_job(ns, "lt-rbac-check-run", "Background")
    assert operator.server_version().startswith("v1.")
    stored = custom_objects.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                         "rbac-check")
    assert stored["status"]["phase"] == "Paused"

    # What neither needs is refused.
    op_core = client.CoreV1Api(identities["operator"])
    op_custom = client.CustomObjectsApi(identities["operator"])
    api_custom = client.CustomObjectsApi(identities["api"])
    api_batch = client.BatchV1Api(identities["api"])
    refused = {
        "operator reads Secrets": lambda: op_core.list_namespaced_secret(ns),
        "operator makes pods": lambda: op_core.create_namespaced_pod(ns, {
            "metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "x"}]}}),
        "operator deletes LongTasks": lambda: op_custom.delete_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "rbac-check"),
        "operator creates LongTasks": lambda: op_custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, {"apiVersion": API_VERSION, "kind": KIND,
                                         **longtask_body("by-operator")}),
        "API writes status": lambda: api_custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, "rbac-check", {"status": {"phase": "Running"}}),
        "API touches Jobs": lambda: api_batch.list_namespaced_job(ns),
        "API reads Secrets": lambda: client.CoreV1Api(identities["api"]).read_namespaced_secret(
            "anything", ns),
    }
    statuses = {what: status_of(call) for what, call in refused.items()}
    assert statuses == dict.fromkeys(refused, 403), statuses
    with pytest.raises(KubeError, match="403"):
        ApiTasks(identities["api"], "default", timeout=10).list_all()

    # The API deletes a LongTask (DELETE /v1/tasks/{name}).
    current = api.get("rbac-check")
    assert current is not None
    api.delete("rbac-check", current["metadata"]["resourceVersion"])
    assert api.get("rbac-check") is None or api.get("rbac-check")["metadata"].get(
        "deletionTimestamp")


def test_the_operator_takes_renews_and_gives_up_its_lease_and_no_other(
        identities: dict[str, Any], chart_release: Release) -> None:
    """The client's election and the operator's Lease calls (operator/leader.py), run as
    the operator's identity; another Lease is refused."""
    env = chart_release.container_env("operator")
    ns, name = env["LONGTASK_OPERATOR_LEASE_NAMESPACE"], env["LONGTASK_OPERATOR_LEASE_NAME"]
    assert ns == chart_release.namespace
    api = LeaseApi(identities["operator"], "rbac-check", timeout=10)
    lock = LeaseLock(name, ns, "rbac-check")
    lock.api_instance = api
    election = LeaderElection(Config(lock, 8, 5, 1, onstarted_leading=lambda: None,
                                     onstopped_leading=None))

    assert election.try_acquire_or_renew(), "the first candidate creates the Lease"
    assert election.try_acquire_or_renew(), "its holder renews it"
    assert api.release(name, ns), "its holder gives it up"
    leases = client.CoordinationV1Api(identities["operator"])
    lease = leases.read_namespaced_lease(name, ns)
    assert lease.spec.holder_identity is None, lease.spec

    other = {"metadata": {"name": "someone-elses"}, "spec": {"holderIdentity": "x"}}
    leases.create_namespaced_lease(ns, other)  # create cannot be limited to a name
    statuses = {
        "read another Lease": status_of(
            lambda: leases.read_namespaced_lease("someone-elses", ns)),
        "update another Lease": status_of(
            lambda: leases.replace_namespaced_lease("someone-elses", ns, other)),
        "delete its Lease": status_of(lambda: leases.delete_namespaced_lease(name, ns)),
        "list Leases": status_of(lambda: leases.list_namespaced_lease(ns)),
        "its Lease elsewhere": status_of(
            lambda: leases.read_namespaced_lease(name, "default")),
    }
    assert statuses == dict.fromkeys(statuses, 403), statuses


def test_the_runner_identity_is_refused_everything(
        identities: dict[str, Any], chart_release: Release) -> None:
    ns = chart_release.namespace
    core = client.CoreV1Api(identities["runner"])
    custom = client.CustomObjectsApi(identities["runner"])
    batch = client.BatchV1Api(identities["runner"])

    statuses = {
        "list pods": status_of(lambda: core.list_namespaced_pod(ns)),
        "read its own ServiceAccount": status_of(lambda: core.read_namespaced_service_account(
            chart_release.service_account("runner"), ns)),
        "read Secrets": status_of(lambda: core.list_namespaced_secret(ns)),
        "list LongTasks": status_of(lambda: custom.list_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL)),
        "list Jobs": status_of(lambda: batch.list_namespaced_job(ns)),
    }

    assert statuses == dict.fromkeys(statuses, 403), statuses
