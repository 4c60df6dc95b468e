"""The operator image under the chart's rules: its real process, as its ServiceAccount.

The operator runs from the image the session built (``built_images``, podman on the host's
network) against the local control plane, logged in with a real token of the chart's
operator ServiceAccount under the chart's RBAC: liveness, the chart's Lease held, then a
task's whole life (start, pause, resume, terminate with rollback) asked for by the API's
own client code as the API's ServiceAccount, with the runner pods run by the local node
from the runner image under the runner's ServiceAccount. (The images' install steps used
to be replayed into a virtual environment here; tests/deploy/test_built_images.py builds
and runs the images.)
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from deploy_support import Containers, Images, Release, token_kubeconfig
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from longtask.api.kube import Tasks as ApiTasks
from longtask.api.kube import load_api_client

from devcluster.kube import KubeCluster, free_port
from longtask.constants import GROUP

# The operator's cluster tests' helpers (data set-up and read-back), reused as they are.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator_cluster"))
import operator_support as s

# The first test may also wait for the session's cold image build.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]


def refusals(log: str) -> list[str]:
    """Log lines of the operator that report a 403, except kopf's listing of namespaces
    and CRDs (refused by design: it goes on with the ones it was started with)."""
    return [line for line in log.splitlines()
            if re.search(r"[Ff]orbidden|\"status\": 403|status=403", line)
            and not re.search(r"GET \S+/(namespaces|customresourcedefinitions) ", line)]


def test_the_operator_image_runs_as_its_service_account_and_drives_a_task_the_api_controls(
        built_images: Images, containers: Containers, kube_cluster: KubeCluster,
        kube_api: Any, core_v1: Any, chart_release: Release, db_url: str,
        operator_db_url: str, runner_db_url: str, db: psycopg2.extensions.connection,
        real_data: Path, tmp_path: Path) -> None:
    """Liveness and the Lease under the chart's rules, a task's whole life, then SIGTERM."""
    ns = chart_release.namespace
    # The database Secret the runner pods read, with the runner's own role (the chart's
    # would name the bundled server).
    core_v1.create_namespaced_secret(ns, {
        "metadata": {"name": chart_release.container_env("operator")[
            "LONGTASK_OPERATOR_DATABASE_SECRET_NAME"]},
        "stringData": {"url": runner_db_url}})
    kubeconfig = token_kubeconfig(kube_cluster, core_v1, ns,
                                  chart_release.service_account("operator"),
                                  tmp_path / "operator.kubeconfig")
    kubeconfig.chmod(0o644)  # for the image's user, 10001
    port = free_port()
    health = f"http://127.0.0.1:{port}/healthz"
    # The runner image the local node has imported (built from the checkout, as the
    # chart's would be pushed): the node pulls nothing.
    env = {**chart_release.container_env("operator"),
           "KUBECONFIG": "/etc/longtask/kubeconfig", "LONGTASK_DATABASE_URL": operator_db_url,
           "LONGTASK_OPERATOR_LIVENESS_ENDPOINT": health,
           "LONGTASK_OPERATOR_RUNNER_IMAGE": kube_cluster.runner_image,
           "LONGTASK_OPERATOR_IMAGE_PULL_POLICY": "Never"}
    options = ["--read-only", "--volume", f"{kubeconfig}:/etc/longtask/kubeconfig:ro"]
    for key, value in env.items():
        options += ["--env", f"{key}={value}"]

    name = containers.start(built_images.tag("operator"), options=options)
    containers.wait_http_ok(name, health)

    # The election works under the chart's rules: the operator holds the chart's Lease
    # (the only Lease its Role lets it write) before it runs any handler. kopf may first
    # retry listing namespaces and CRDs, which the chart does not grant, before it goes on
    # with the namespaces it was given.
    lease_name = env["LONGTASK_OPERATOR_LEASE_NAME"]
    lease_namespace = env["LONGTASK_OPERATOR_LEASE_NAMESPACE"]
    leases = client.CoordinationV1Api(kube_api)
    deadline = time.monotonic() + 100
    holder = None
    while time.monotonic() < deadline and not holder:
        try:
            lease = leases.read_namespaced_lease(lease_name, lease_namespace)
            holder = lease.spec.holder_identity if lease.spec else None
        except ApiException as error:
            if error.status != 404:
                raise
        time.sleep(0.5)
    assert holder, f"the operator did not take the Lease {lease_name}:\n{containers.logs(name)}"
    forbidden = refusals(containers.logs(name))
    assert forbidden == [], "the operator was refused something it uses:\n" + "\n".join(forbidden)

    api_kubeconfig = token_kubeconfig(kube_cluster, core_v1, ns,
                                      chart_release.service_account("api"),
                                      tmp_path / "api.kubeconfig")
    run_lifecycle(ApiTasks(load_api_client(api_kubeconfig, 4), ns, timeout=10), db, db_url,
                  real_data, lambda: containers.logs(name))
    forbidden = refusals(containers.logs(name))
    assert forbidden == [], "the operator was refused something it uses:\n" + "\n".join(forbidden)

    code, seconds = containers.stop_pid1(name)
    assert code == 0, f"exit {code}:\n{containers.logs(name)}"
    assert seconds < 10, f"the operator took {seconds:.1f}s to stop on SIGTERM"


def wait_phase(api: ApiTasks, name: str, phases: set[str], log: Callable[[], str],
               timeout: float = 90) -> dict[str, Any]:
    """Poll the task as the API identity until its phase is one of ``phases``."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api.get(name)
        status = (body or {}).get("status") or {}
        if status.get("phase") in phases:
            assert body is not None
            return body
        time.sleep(0.3)
    pytest.fail(f"{name} not {phases} after {timeout:.0f}s; status {status}\n"
                f"operator log ends with:\n{log()[-3000:]}")


def run_lifecycle(api: ApiTasks, db: psycopg2.extensions.connection, db_url: str,
                  real_data: Path, log: Callable[[], str]) -> None:
    """Start, pause, resume and terminate a baseline upload through the API's client."""
    data = (real_data / s.KARNATAKA).read_bytes()
    org = s.create_org(db)
    s.create_village_form(db, org, "villages", data.split(b"\n", 1)[0].decode().split(","))
    file_id = s.store_file(db_url, data, s.KARNATAKA)
    who = {f"{GROUP}/requested-by": "deploy-check", f"{GROUP}/reason": "lifecycle"}

    created = api.create({"metadata": {"name": "villages", "annotations": who},
                          "spec": s.baseline_spec(file_id, "villages", rate_limit=1500)})
    uid = created["metadata"]["uid"]
    wait_phase(api, "villages", {"Running"}, log)
    api.patch("villages", {"spec": {"state": "Paused"}})
    paused = wait_phase(api, "villages", {"Paused"}, log)
    done = (paused["status"].get("progress") or {}).get("done", 0)
    assert done < 14859, "paused only after the end"
    api.patch("villages", {"spec": {"state": "Running"}})
    wait_phase(api, "villages", {"Running"}, log)
    api.patch("villages", {"spec": {"state": "Terminated"}})
    ended = wait_phase(api, "villages", {"RolledBack", "Failed", "Succeeded"}, log)

    assert ended["status"]["phase"] == "RolledBack", ended["status"]
    assert s.rows_of_task(db, uid) == 0, "the rollback left rows of the task"
    reasons = {e["reason"] for e in api.events(uid)}
    assert {"PauseRequested", "Resumed", "TerminateRequested", "RolledBack"} <= reasons, reasons
