"""Deletion with propagation and owner references, done by the real garbage collector."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devcluster.kube import wait_for
from devcluster.pytest_fixtures import job_pods, raw

pytestmark = pytest.mark.cluster


def sleeper_job(name: str, image: str,
                owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                            "command": ["python3", "-c", "import time; time.sleep(120)"]}]}}},
    }


def job_exists(batch_v1: Any, ns: str, name: str) -> bool:
    try:
        raw(batch_v1.read_namespaced_job(name, ns, _preload_content=False))
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def running_pods(core_v1: Any, ns: str, job: str) -> list[str]:
    pods = raw(core_v1.list_namespaced_pod(
        ns, label_selector=f"batch.kubernetes.io/job-name={job}", _preload_content=False))
    return [p["metadata"]["name"] for p in pods["items"]
            if p.get("status", {}).get("phase") == "Running"]


def test_deleting_a_job_in_the_background_removes_its_pods(
        batch_v1: Any, core_v1: Any, kube_namespace: str, pod_image: str) -> None:
    batch_v1.create_namespaced_job(kube_namespace, sleeper_job("doomed", pod_image))
    wait_for(lambda: running_pods(core_v1, kube_namespace, "doomed"), timeout=30,
             what="the Job's pod to run")

    batch_v1.delete_namespaced_job("doomed", kube_namespace, propagation_policy="Background")

    wait_for(lambda: not job_exists(batch_v1, kube_namespace, "doomed"), timeout=30,
             what="the Job to be deleted")
    wait_for(lambda: job_pods(core_v1, kube_namespace, "doomed") == [], timeout=30,
             what="the garbage collector to delete the Job's pods")


def test_deleting_an_owner_deletes_the_job_that_it_owns(
        batch_v1: Any, core_v1: Any, kube_namespace: str, pod_image: str) -> None:
    owner = raw(core_v1.create_namespaced_config_map(
        kube_namespace, {"metadata": {"name": "owner"}}, _preload_content=False))
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                 "uid": owner["metadata"]["uid"]}
    batch_v1.create_namespaced_job(kube_namespace, sleeper_job("owned", pod_image, reference))
    wait_for(lambda: running_pods(core_v1, kube_namespace, "owned"), timeout=30,
             what="the owned Job's pod to run")

    core_v1.delete_namespaced_config_map("owner", kube_namespace)

    wait_for(lambda: not job_exists(batch_v1, kube_namespace, "owned"), timeout=60,
             what="the garbage collector to delete the Job owned by the deleted ConfigMap")
    wait_for(lambda: job_pods(core_v1, kube_namespace, "owned") == [], timeout=30,
             what="the owned Job's pods to be deleted in turn")
