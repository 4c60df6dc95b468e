"""What the images would run works: their install steps replayed, their commands started.

No container engine runs here. ``image_env`` builds a virtual environment with
requirements/install.sh, the script and requirements files the Dockerfiles use; these
tests start that environment's entry points the way the images and the chart start them:
the runner's command line, the migrations, and the operator and the API against the local
control plane, each logged in as its own ServiceAccount with the chart's RBAC and answering
on its health endpoint.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml
from deploy_support import REPO, Release, clean_env, popen, run, token_kubeconfig
from longtask.api.kube import Tasks as ApiTasks
from longtask.api.kube import load_api_client

from devcluster.kube import KubeCluster, free_port
from longtask.constants import GROUP

# The operator's cluster tests' helpers (data set-up and read-back), reused as they are.
sys.path.insert(0, str(REPO / "tests" / "operator_cluster"))
import operator_support as s

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def wait_answering(proc: subprocess.Popen[bytes], url: str, log: Path,
                   timeout: float = 60) -> None:
    """Wait until ``url`` answers 200; fail with the process log when it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before {url} answered:\n"
                        f"{log.read_text(errors='replace')[-4000:]}")
        try:
            if http_get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer 200 in {timeout:.0f}s:\n"
                f"{log.read_text(errors='replace')[-4000:]}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> float:
    """SIGTERM, as the kubelet sends; the seconds the process took to exit."""
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"did not stop within {timeout:.0f}s of SIGTERM")
    return time.monotonic() - started


def refusals(log: Path) -> list[str]:
    """Log lines of the operator that report a 403, except kopf's listing of namespaces
    and CRDs (refused by design: it goes on with the ones it was started with)."""
    return [line for line in log.read_text(errors="replace").splitlines()
            if re.search(r"[Ff]orbidden|\"status\": 403|status=403", line)
            and not re.search(r"GET \S+/(namespaces|customresourcedefinitions) ", line)]


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; killed afterwards if still running."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --------------------------------------------------------------------------- runner image


def test_the_runner_environment_starts_its_command_and_holds_no_operator_code_deps(
        image_env: Callable[[str], Path]) -> None:
    venv = image_env("runner")

    help_text = run([venv / "bin" / "python", "-m", "longtask.runner", "--help"],
                    env=clean_env(), cwd="/tmp").stdout
    assert "run" in help_text and "rollback" in help_text, help_text
    run([venv / "bin" / "longtask-runner", "--help"], env=clean_env(), cwd="/tmp")
    for module in ("kopf", "kubernetes", "fastapi"):
        absent = run([venv / "bin" / "python", "-c", f"import {module}"], env=clean_env(),
                     check=False, cwd="/tmp")
        assert absent.returncode != 0, f"the runner image should not hold {module}"


def test_the_runner_environment_imports_every_task_type(
        image_env: Callable[[str], Path]) -> None:
    venv = image_env("runner")
    script = "import longtask.runner.cli, longtask.tasktypes as t; print(sorted(t.REGISTRY))"

    out = run([venv / "bin" / "python", "-c", script], env=clean_env(), cwd="/tmp").stdout

    assert out.strip() == "['BaselineUpload', 'BulkTeamCreate', 'Export']", out


# --------------------------------------------------------------------------- operator image


def test_the_migrations_run_from_the_operator_environment(
        image_env: Callable[[str], Path], pg_server_url: str) -> None:
    venv = image_env("operator")
    name = f"image_env_{os.getpid()}"
    admin = psycopg2.connect(pg_server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    url = pg_server_url.rpartition("/")[0] + f"/{name}"
    try:
        run([venv / "bin" / "longtask-migrate", "upgrade", "head"],
            env=clean_env(LONGTASK_DATABASE_URL=url), cwd="/tmp")
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('longtask.tasks') IS NOT NULL")
            row = cur.fetchone()
        assert row == (True,), "the migrations did not create longtask.tasks"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_the_operator_runs_as_its_service_account_and_drives_a_task_the_api_controls(
        image_env: Callable[[str], Path], kube_cluster: KubeCluster, core_v1: Any,
        custom_objects: Any, chart_release: Release, db_url: str,
        db: psycopg2.extensions.connection, real_data: Path, tmp_path: Path,
        running: list[subprocess.Popen[bytes]]) -> None:
    """The operator from the image environment, as its ServiceAccount under the chart's
    rules: liveness, peering, then a task's whole life (start, pause, resume, terminate
    with rollback) asked for by the API's own client code as the API's ServiceAccount, with
    the runner pods run by the local kubelet as the chart's runner ServiceAccount."""
    venv = image_env("operator")
    ns = chart_release.namespace
    # The database Secret the runner pods read (the chart's would name the bundled server).
    core_v1.create_namespaced_secret(ns, {
        "metadata": {"name": chart_release.container_env("operator")[
            "LONGTASK_OPERATOR_DATABASE_SECRET_NAME"]},
        "stringData": {"url": db_url}})
    kubeconfig = token_kubeconfig(kube_cluster, core_v1, ns,
                                  chart_release.service_account("operator"),
                                  tmp_path / "operator.kubeconfig")
    port = free_port()
    env = clean_env(**{**chart_release.container_env("operator"),
                       "KUBECONFIG": str(kubeconfig), "LONGTASK_DATABASE_URL": db_url,
                       "LONGTASK_OPERATOR_LIVENESS_ENDPOINT": f"http://127.0.0.1:{port}/healthz"})
    log = tmp_path / "operator.log"

    proc = popen([venv / "bin" / "python", "-m", "longtask.operator"], env, log)
    running.append(proc)
    wait_answering(proc, f"http://127.0.0.1:{port}/healthz", log)

    # Peering works under the chart's rules: the operator has entered itself in the
    # KopfPeering the chart made. Until the operator sets kopf's settings.scanning.disabled
    # (its documented restricted mode), kopf first retries listing namespaces and CRDs,
    # which the chart does not grant, for about a minute before it goes on without them.
    peering = env["LONGTASK_OPERATOR_PEERING_NAME"]
    deadline = time.monotonic() + 100
    peers: dict[str, Any] = {}
    while time.monotonic() < deadline and not peers:
        body = custom_objects.get_namespaced_custom_object("kopf.dev", "v1", ns,
                                                           "kopfpeerings", peering)
        peers = body.get("status") or {}
        time.sleep(0.5)
    assert peers, f"the operator did not enter the peering {peering}:\n{log.read_text()[-3000:]}"
    forbidden = refusals(log)
    assert forbidden == [], "the operator was refused something it uses:\n" + "\n".join(forbidden)

    api_kubeconfig = token_kubeconfig(kube_cluster, core_v1, ns,
                                      chart_release.service_account("api"),
                                      tmp_path / "api.kubeconfig")
    run_lifecycle(ApiTasks(load_api_client(api_kubeconfig, 4), ns, timeout=10), db, db_url,
                  real_data, log)
    forbidden = refusals(log)
    assert forbidden == [], "the operator was refused something it uses:\n" + "\n".join(forbidden)

    seconds = stop(proc)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{log.read_text()[-3000:]}"
    assert seconds < 10, f"the operator took {seconds:.1f}s to stop on SIGTERM"


def wait_phase(api: ApiTasks, name: str, phases: set[str], log: Path,
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
                f"operator log ends with:\n{log.read_text(errors='replace')[-3000:]}")


def run_lifecycle(api: ApiTasks, db: psycopg2.extensions.connection, db_url: str,
                  real_data: Path, log: Path) -> None:
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


def test_the_api_runs_as_its_service_account_and_answers(
        image_env: Callable[[str], Path], kube_cluster: KubeCluster, core_v1: Any,
        chart_release: Release, db_url: str, tmp_path: Path,
        running: list[subprocess.Popen[bytes]]) -> None:
    venv = image_env("operator")
    ns = chart_release.namespace
    kubeconfig = token_kubeconfig(kube_cluster, core_v1, ns, chart_release.service_account("api"),
                                  tmp_path / "api.kubeconfig")
    (tokens,) = chart_release.find("Secret", f"{chart_release.fullname}-api-tokens")
    (admin,) = chart_release.find("Secret", f"{chart_release.fullname}-api-admin-token")
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text(tokens["stringData"]["tokens.yaml"])
    token = base64.b64decode(admin["data"]["token"]).decode()
    assert yaml.safe_load(tokens_file.read_text())["tokens"], "the chart made no token"
    port = free_port()
    env = clean_env(**{**chart_release.container_env("api"),
                       "LONGTASK_DATABASE_URL": db_url,
                       "LONGTASK_API_KUBECONFIG": str(kubeconfig),
                       "LONGTASK_API_TOKENS_FILE": str(tokens_file),
                       "LONGTASK_API_HOST": "127.0.0.1", "LONGTASK_API_PORT": str(port)})
    log = tmp_path / "api.log"
    base = f"http://127.0.0.1:{port}"

    proc = popen([venv / "bin" / "python", "-m", "longtask.api"], env, log)
    running.append(proc)
    wait_answering(proc, f"{base}/healthz", log)

    ready = http_get(f"{base}/readyz")
    assert ready[0] == 200, f"/readyz: {ready}\n{log.read_text()[-3000:]}"
    listed = http_get(f"{base}/v1/tasks", token)
    assert listed[0] == 200, f"GET /v1/tasks with the chart's admin token: {listed}"
    assert http_get(f"{base}/v1/tasks")[0] == 401, "a call without a token must be refused"

    seconds = stop(proc)
    assert seconds < 12, f"the API took {seconds:.1f}s to stop on SIGTERM"
