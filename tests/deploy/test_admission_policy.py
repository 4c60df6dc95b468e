"""The chart's ValidatingAdmissionPolicy, applied to the local control plane's API server.

A namespace holds the organizations its annotation ``collect.atlan.com/organizations``
lists; the API's ServiceAccount may create for any (it checks tokens itself); everyone
else, the cluster's admin included, is refused anything else. Each test's policy is bound
by a label selector to its own namespace only, so the other tests' namespaces are not
touched, and the (cluster-scoped) policy is deleted afterwards.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from deploy_support import RBAC_KINDS, apply_objects, kubectl, render

from devcluster.kube import KubeCluster
from longtask.constants import API_VERSION, GROUP, KIND

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

ANNOTATION = f"{GROUP}/organizations"
SELECTOR_LABEL = "longtask.dev/admission-test"
# Seconds: a new policy and binding reach the API server's admission through its informers.
POLICY_ACTIVE_TIMEOUT = 30


class Policy:
    """The rendered policy of one test's release, bound to one namespace."""

    def __init__(self, cluster: KubeCluster, namespace: str, release: str) -> None:
        self.cluster, self.namespace, self.release = cluster, namespace, release
        self.api_user = f"system:serviceaccount:{namespace}:{release}-longtask-api"

    def create(self, organization: str, *, as_user: str | None = None,
               name: str | None = None) -> tuple[bool, str]:
        """Create (server-side dry run: admission runs, nothing is stored) a LongTask of
        ``organization``; (admitted, kubectl's stderr)."""
        body = {"apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": name or f"t-{secrets.token_hex(3)}",
                             "namespace": self.namespace},
                "spec": {"type": "Export", "organization": organization,
                         "params": {"since": "2017-08-01"}, "state": "Paused"}}
        args = ["create", "--dry-run=server", "-o", "name", "-f", "-"]
        if as_user:
            args.append(f"--as={as_user}")
        out = kubectl(self.cluster, *args, stdin=json.dumps(body), check=False)
        return out.returncode == 0, out.stderr

    def annotate(self, value: str | None) -> None:
        """Set (or, with None, remove) the namespace's organizations annotation."""
        arg = f"{ANNOTATION}-" if value is None else f"{ANNOTATION}={value}"
        kubectl(self.cluster, "annotate", "--overwrite", "namespace", self.namespace, arg)


@pytest.fixture
def policy(kube_cluster: KubeCluster, kube_namespace: str, chart_crds: list[str],
           tmp_path: Path) -> Iterator[Policy]:
    release = f"adm{secrets.token_hex(3)}"
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"admissionPolicy": {
        "namespaceSelector": {"matchLabels": {SELECTOR_LABEL: release}}}}))
    objects = render([values], namespace=kube_namespace, release=release)
    admission = [o for o in objects if o["kind"].startswith("ValidatingAdmissionPolicy")]
    assert {o["kind"] for o in admission} == {"ValidatingAdmissionPolicy",
                                             "ValidatingAdmissionPolicyBinding"}
    # The API's Role and binding, and one for a user who may create LongTasks but is not
    # the API.
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS
            and o["metadata"]["name"] == f"{release}-longtask-api"
            and "helm.sh/hook" not in o["metadata"].get("annotations", {})]
    intruder = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "intruder", "namespace": kube_namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": f"{release}-longtask-api"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": "intruder"}]}
    kubectl(kube_cluster, "label", "namespace", kube_namespace, f"{SELECTOR_LABEL}={release}")
    apply_objects(kube_cluster, [*rbac, intruder, *admission])
    found = Policy(kube_cluster, kube_namespace, release)
    try:
        deadline = time.monotonic() + POLICY_ACTIVE_TIMEOUT
        while found.create("acme")[0]:
            assert time.monotonic() < deadline, (
                f"the policy refused nothing within {POLICY_ACTIVE_TIMEOUT} s")
            time.sleep(0.2)
        yield found
    finally:
        for obj in admission:
            kubectl(kube_cluster, "delete", obj["kind"].lower(), obj["metadata"]["name"],
                    "--ignore-not-found", "--wait=false")


def test_a_bare_namespace_holds_no_task_but_the_apis(policy: Policy) -> None:
    admitted, error = policy.create("acme")

    assert not admitted
    assert (f"namespace {policy.namespace} may not hold tasks of organization acme: its "
            f"annotation {ANNOTATION} lists none") in error, error
    assert not policy.create("acme", as_user="intruder")[0]
    # The API checked the caller's token for the organization already.
    assert policy.create("acme", as_user=policy.api_user)[0]
    assert policy.create("globex", as_user=policy.api_user)[0]


def test_an_annotated_namespace_holds_exactly_the_listed_organizations(
        policy: Policy) -> None:
    policy.annotate("acme, initech")

    for user in (None, "intruder"):
        assert policy.create("acme", as_user=user)[0]
        assert policy.create("initech", as_user=user)[0]
        admitted, error = policy.create("globex", as_user=user)
        assert not admitted and "organization globex" in error and "acme,initech" in error

    policy.annotate("*")
    assert policy.create("globex", as_user="intruder")[0]

    policy.annotate(None)
    assert not policy.create("acme", as_user="intruder")[0]


def test_a_task_whose_organization_left_the_namespace_can_still_be_controlled(
        policy: Policy, kube_cluster: KubeCluster) -> None:
    policy.annotate("acme")
    body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "kept"},
            "spec": {"type": "Export", "organization": "acme",
                     "params": {"since": "2017-08-01"}, "state": "Paused"}}
    kubectl(kube_cluster, "create", "-n", policy.namespace, "-f", "-", stdin=json.dumps(body))
    policy.annotate(None)

    kubectl(kube_cluster, "patch", "-n", policy.namespace, "longtask", "kept", "--type=merge",
            "-p", json.dumps({"spec": {"state": "Terminated"}}))
    kubectl(kube_cluster, "delete", "-n", policy.namespace, "longtask", "kept", "--wait=false")
