"""The process kubelet (``LONGTASK_KUBE_NODE=process``) runs pods the way a kubelet would.

It is the node of a machine with no root or no containerd (hack/KUBE.md says where it still
serves); the suite's other cluster tests run on the real node. These start their own
cluster with the process kubelet, once for the module.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import kube
from devcluster.kube import KubeCluster, wait_for
from devcluster.pytest_fixtures import pod_json

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def process_cluster() -> Iterator[KubeCluster]:
    """A cluster whose node is the process kubelet, for this module."""
    cluster = kube.start(node="process")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def process_core(process_cluster: KubeCluster) -> Iterator[Any]:
    """``CoreV1Api`` of :func:`process_cluster` as the admin."""
    from kubernetes import client
    api = process_cluster.api_client()
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


@pytest.fixture
def process_namespace(process_core: Any) -> Iterator[str]:
    """A fresh namespace of :func:`process_cluster` with its ``default`` service account."""
    import secrets

    from kubernetes.client.exceptions import ApiException
    name = f"t-process-{secrets.token_hex(3)}"
    process_core.create_namespace({"metadata": {"name": name}})

    def has_default_sa() -> bool:
        try:
            process_core.read_namespaced_service_account("default", name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    wait_for(has_default_sa, timeout=30, what=f"service account default in {name}")
    yield name
    process_core.delete_namespace(name, propagation_policy="Background")


def pod(name: str, command: list[str], *, restart: str = "Never",
        env: list[dict[str, Any]] | None = None, **container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 30,
                     "containers": [{"name": "main", "image": "longtask/test-program",
                                     "command": command, "env": env or [], **container}]}}


def terminal_phase(process_core: Any, ns: str, name: str) -> dict[str, Any] | None:
    obj = pod_json(process_core, ns, name)
    if obj and obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return obj
    return None


def test_a_failing_container_reports_its_exit_code(process_core: Any,
                                                   process_namespace: str) -> None:
    process_core.create_namespaced_pod(process_namespace, pod(
        "fails", ["python3", "-c", "import sys; sys.exit(3)"]))

    obj = wait_for(lambda: terminal_phase(process_core, process_namespace, "fails"), timeout=30,
                   what="the pod to end")

    state = obj["status"]["containerStatuses"][0]["state"]
    assert obj["status"]["phase"] == "Failed", f"expected phase Failed, got {obj['status']}"
    assert state["terminated"]["exitCode"] == 3, f"expected exit code 3, got {state}"
    assert state["terminated"]["reason"] == "Error", f"expected reason Error, got {state}"


def test_the_environment_is_built_from_values_secrets_config_maps_and_the_downward_api(
        process_core: Any, process_namespace: str, process_cluster: KubeCluster) -> None:
    ns = process_namespace
    process_core.create_namespaced_secret(ns, {"metadata": {"name": "db"},
                                          "stringData": {"url": "postgresql://db/x"}})
    process_core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"},
                                              "data": {"CHUNK": "500", "MODE": "fast"}})
    env = [
        {"name": "GREETING", "value": "hello"},
        {"name": "PHRASE", "value": "$(GREETING) world, $$(GREETING)"},
        {"name": "DB_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
        {"name": "CHUNK_SIZE",
         "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "CHUNK"}}},
        {"name": "MISSING", "valueFrom": {"secretKeyRef": {
            "name": "absent", "key": "k", "optional": True}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE",
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]
    process_core.create_namespaced_pod(ns, pod(
        "env", ["python3", "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        env=env, envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}]))

    obj = wait_for(lambda: terminal_phase(process_core, ns, "env"), timeout=30,
                   what="the pod to end")
    assert obj["status"]["phase"] == "Succeeded", f"pod did not succeed: {obj['status']}"
    seen = json.loads(process_cluster.pod_log(ns, "env").splitlines()[-1])

    expected = {
        "GREETING": "hello", "PHRASE": "hello world, $(GREETING)",
        "DB_URL": "postgresql://db/x", "CHUNK_SIZE": "500", "CFG_CHUNK": "500",
        "CFG_MODE": "fast", "POD_NAME": "env", "POD_NAMESPACE": ns,
        "POD_UID": obj["metadata"]["uid"],
    }
    assert {k: seen.get(k) for k in expected} == expected
    assert "MISSING" not in seen, "an optional reference to a missing secret sets nothing"


def test_a_missing_secret_holds_the_container_until_it_exists(
        process_core: Any, process_namespace: str) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "t"}}}]
    process_core.create_namespaced_pod(process_namespace, pod(
        "waits", ["python3", "-c", "import os, sys; sys.exit(os.environ['TOKEN'] != 'ok')"],
        env=env))

    def waiting_reason() -> str | None:
        obj = pod_json(process_core, process_namespace, "waits") or {}
        for status in obj.get("status", {}).get("containerStatuses") or []:
            reason: str | None = status.get("state", {}).get("waiting", {}).get("reason")
            return reason
        return None

    wait_for(lambda: waiting_reason() == "CreateContainerConfigError", timeout=30,
             what="the container to wait with CreateContainerConfigError")
    process_core.create_namespaced_secret(process_namespace, {"metadata": {"name": "later"},
                                                      "stringData": {"t": "ok"}})
    obj = wait_for(lambda: terminal_phase(process_core, process_namespace, "waits"), timeout=30,
                   what="the pod to end once the secret exists")
    assert obj["status"]["phase"] == "Succeeded", f"expected Succeeded, got {obj['status']}"


def test_on_failure_restarts_the_container_until_it_succeeds(
        process_core: Any, process_namespace: str, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    program = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
               "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
               "sys.exit(0 if n >= 1 else 7)")
    process_core.create_namespaced_pod(process_namespace, pod(
        "flaky", ["python3", "-c", program], restart="OnFailure"))

    obj = wait_for(lambda: terminal_phase(process_core, process_namespace, "flaky"), timeout=60,
                   what="the pod to end")

    status = obj["status"]["containerStatuses"][0]
    assert obj["status"]["phase"] == "Succeeded", f"expected Succeeded, got {obj['status']}"
    assert status["restartCount"] == 1, f"expected one restart, got {status}"
    assert status["lastState"]["terminated"]["exitCode"] == 7, f"got {status['lastState']}"


def test_deletion_kills_a_process_that_ignores_sigterm_after_the_grace_period(
        process_core: Any, process_namespace: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    program = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               f"open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(300)")
    process_core.create_namespaced_pod(process_namespace, pod("stubborn", [sys.executable, "-c",
                                                                   program]))
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=30,
                       what="the program to record its pid"))

    process_core.delete_namespaced_pod("stubborn", process_namespace, grace_period_seconds=2)

    wait_for(lambda: pod_json(process_core, process_namespace, "stubborn") is None, timeout=20,
             what="the pod to be gone from the API")
    assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), (
        f"process {pid} should have been killed once the 2 s grace period ran out")


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return not os.path.exists(f"/proc/{pid}")


def test_a_pod_whose_process_vanished_with_the_kubelet_is_reported_failed_with_137(
        process_core: Any, process_namespace: str, process_cluster: KubeCluster) -> None:
    process_core.create_namespaced_pod(process_namespace, pod(
        "orphan", ["python3", "-c", "import time; time.sleep(300)"]))
    wait_for(lambda: (pod_json(process_core, process_namespace, "orphan") or {}).get(
        "status", {}).get("phase") == "Running", timeout=30, what="the pod to run")

    process_cluster.restart_kubelet()

    obj = wait_for(lambda: terminal_phase(process_core, process_namespace, "orphan"), timeout=30,
                   what="the restarted kubelet to report the lost container")
    state = obj["status"]["containerStatuses"][0]["state"]
    assert obj["status"]["phase"] == "Failed", f"expected Failed, got {obj['status']}"
    assert state["terminated"]["exitCode"] == 137, f"expected exit code 137, got {state}"
    assert state["terminated"]["reason"] == "ContainerStatusUnknown", f"got {state}"


def test_an_on_failure_pod_whose_process_vanished_is_restarted_by_the_new_kubelet(
        process_core: Any, process_namespace: str, process_cluster: KubeCluster,
        tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    program = (f"import os, pathlib, sys, time; p = pathlib.Path({str(counter)!r}); "
               "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
               "sys.exit(0) if n else time.sleep(300)")
    env = [{"name": "RUN", "value": "adopted"}]
    process_core.create_namespaced_pod(process_namespace, pod(
        "survivor", ["python3", "-c", program], restart="OnFailure", env=env))
    wait_for(lambda: counter.exists(), timeout=30, what="the first run to start")

    process_cluster.restart_kubelet()

    obj = wait_for(lambda: terminal_phase(process_core, process_namespace, "survivor"), timeout=30,
                   what="the pod to end after its restart")
    status = obj["status"]["containerStatuses"][0]
    assert obj["status"]["phase"] == "Succeeded", f"expected Succeeded, got {obj['status']}"
    assert status["restartCount"] == 1, f"expected one restart, got {status}"
    assert status["lastState"]["terminated"]["reason"] == "ContainerStatusUnknown", status
