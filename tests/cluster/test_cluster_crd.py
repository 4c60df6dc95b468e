"""CustomResourceDefinitions: the server validates objects against their schema."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from devcluster.kube import REPO
from longtask import tasktypes
from longtask.constants import API_VERSION, KIND, PLURAL, VERSION
from longtask.constants import GROUP as LONGTASK_GROUP

pytestmark = pytest.mark.cluster

GROUP = "test.longtask.dev"


@pytest.fixture
def widget_crd(tmp_path: Path, apply_crds: Callable[..., list[str]],
               apiextensions_v1: Any) -> Iterator[str]:
    """A namespaced CRD ``<plural>.test.longtask.dev`` whose spec.size is an integer >= 1."""
    plural = f"widgets{secrets.token_hex(3)}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": plural,
                           "kind": plural.capitalize()},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                         "type": "object", "required": ["size"],
                         "properties": {"size": {"type": "integer", "minimum": 1}}}}}}}]},
    }
    (tmp_path / "widget.yaml").write_text(yaml.safe_dump(crd))
    apply_crds(tmp_path)
    try:
        yield plural
    finally:
        apiextensions_v1.delete_custom_resource_definition(f"{plural}.{GROUP}")


def widget(plural: str, size: object) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": plural.capitalize(),
            "metadata": {"name": "w"}, "spec": {"size": size}}


def test_an_object_that_breaks_the_schema_is_refused_by_the_server_with_422(
        widget_crd: str, custom_objects: Any, kube_namespace: str) -> None:
    with pytest.raises(ApiException) as refused:
        custom_objects.create_namespaced_custom_object(
            GROUP, "v1", kube_namespace, widget_crd, widget(widget_crd, 0))

    assert refused.value.status == 422, f"expected 422, got {refused.value.status}"
    details = json.loads(refused.value.body)
    assert "spec.size" in details["message"], f"expected a spec.size error: {details}"


def test_an_object_that_meets_the_schema_is_stored(
        widget_crd: str, custom_objects: Any, kube_namespace: str) -> None:
    custom_objects.create_namespaced_custom_object(
        GROUP, "v1", kube_namespace, widget_crd, widget(widget_crd, 3))

    stored = custom_objects.get_namespaced_custom_object(
        GROUP, "v1", kube_namespace, widget_crd, "w")
    assert stored["spec"] == {"size": 3}


def test_the_project_crds_are_accepted_and_established(project_crds: list[str]) -> None:
    files = sorted((REPO / "crds").glob("*.yaml"))
    documents = [d for f in files for d in yaml.safe_load_all(f.read_text())
                 if d and d.get("kind") == "CustomResourceDefinition"]
    assert sorted(project_crds) == sorted(d["metadata"]["name"] for d in documents)


# (type, organization, concurrencyKey, admitted): the key rules of
# longtask.tasktypes.concurrency_key_problem, which the CRD must hold to as well.
KEY_CASES = [
    ("Export", "acme", "Export/acme/nightly", True),
    ("Export", "acme", "reports/acme", True),
    ("Export", "acme", "Export/globex/household-survey", False),
    ("Export", "acme", "acme", False),
    ("Export", "acme", "acme/Export", False),
    ("BulkTeamCreate", "acme", "BulkTeamCreate/acme", True),
    ("BulkTeamCreate", "acme", "BulkTeamCreate/globex", False),
    ("BaselineUpload", "acme", "BaselineUpload/acme", True),
    ("BaselineUpload", "acme", "BaselineUpload/acme/second", False),
    ("BaselineUpload", "acme", "census/acme", False),
    ("BaselineUpload", "acme", "BaselineUpload/globex", False),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("type_name", "organization", "key", "admitted"), KEY_CASES)
def test_the_crd_and_the_api_refuse_the_same_concurrency_keys(
        project_crds: list[str], custom_objects: Any, kube_namespace: str, type_name: str,
        organization: str, key: str, admitted: bool) -> None:
    body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "keyed"},
            "spec": {"type": type_name, "organization": organization, "params": {},
                     "concurrencyKey": key, "state": "Paused"}}

    try:
        custom_objects.create_namespaced_custom_object(
            LONGTASK_GROUP, VERSION, kube_namespace, PLURAL, body, dry_run="All")
        server_admitted, said = True, ""
    except ApiException as err:
        assert err.status == 422, err.body
        server_admitted, said = False, json.loads(err.body)["message"]

    assert server_admitted == admitted, said
    assert (tasktypes.concurrency_key_problem(type_name, organization, key) is None) == admitted
    if not admitted:
        assert "spec.concurrencyKey" in said, said


@pytest.mark.timeout(60)
def test_the_server_lets_the_rate_limit_change_within_its_bounds_and_parallelism_not(
        project_crds: list[str], custom_objects: Any, kube_namespace: str) -> None:
    body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "throttled"},
            "spec": {"type": "Export", "organization": "acme", "params": {},
                     "state": "Paused", "rateLimit": 100}}
    custom_objects.create_namespaced_custom_object(LONGTASK_GROUP, VERSION, kube_namespace,
                                                   PLURAL, body)

    def patch(spec: dict[str, Any]) -> dict[str, Any]:
        stored: dict[str, Any] = custom_objects.patch_namespaced_custom_object(
            LONGTASK_GROUP, VERSION, kube_namespace, PLURAL, "throttled", {"spec": spec})
        return stored["spec"]

    def refused(spec: dict[str, Any]) -> str:
        with pytest.raises(ApiException) as caught:
            patch(spec)
        assert caught.value.status == 422, caught.value.body
        message: str = json.loads(caught.value.body)["message"]
        return message

    assert patch({"rateLimit": 20})["rateLimit"] == 20
    assert "rateLimit" not in patch({"rateLimit": None})
    assert patch({"rateLimit": 1_000_000})["rateLimit"] == 1_000_000
    assert "spec.rateLimit" in refused({"rateLimit": 0})
    assert "parallelism cannot change" in refused({"parallelism": 2})
