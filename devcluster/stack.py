"""The whole product on this machine: PostgreSQL, Kubernetes, the operator and the API.

:func:`start` brings up, on loopback ports it picks:

- a throwaway PostgreSQL cluster with the migrations applied and a login role per component
  (the operator, the API and the runner Jobs each connect with their own; ``db_url`` is the
  migration owner's);
- the local Kubernetes control plane (:mod:`devcluster.kube`) with the CRDs from ``crds/``,
  a namespace, the database Secret the runner Jobs read and the runner's ServiceAccount;
- the operator (``python -m longtask.operator``) watching that namespace;
- the REST API (``python -m longtask.api``) with one operator token per organization.

The runner Jobs' pods run on the cluster's real node (containerd and the kubelet) from the
runner image built from the checkout, so the whole lifecycle (the Job manifest, the image's
entrypoint, suspend, SIGTERM, grace periods, exit codes, the rollback Job) is the real
thing; they share the host's network and reach PostgreSQL on loopback.
``LONGTASK_KUBE_NODE=process`` runs them as local processes instead (hack/KUBE.md). Used by
``make demo`` and the end-to-end tests. Command line: ``python -m devcluster.stack
[--keep-data]`` serves until SIGINT, SIGTERM or SIGHUP, then stops everything and removes its
data (:func:`main`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster import examples, kube, postgres, signals
from longtask.db import connect
from longtask.db.migrate import upgrade

DATABASE_SECRET = "longtask-database"
RUNNER_ACCOUNT = "longtask-runner"


@dataclass
class Stack:
    """A running stack; :meth:`stop` ends every process it started."""

    workdir: Path
    pg: postgres.PostgresServer
    cluster: kube.KubeCluster
    namespace: str
    tokens: dict[str, str]  # organization -> plain bearer token (role operator)
    api_url: str
    operator_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # component (api, operator, runner) -> the URL of its own database role
    role_urls: dict[str, str] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        """The migration owner's URL (the server's superuser here): for setup and checks."""
        return self.pg.url

    def example_env(self) -> dict[str, str]:
        """The variables the READMEs' examples read: ``API``, ``TOKEN`` (an operator of
        the first organization), ``EXAMPLES`` (the example files, when loaded),
        ``KUBECONFIG`` and ``NAMESPACE``."""
        return {"API": self.api_url, "TOKEN": next(iter(self.tokens.values())),
                "EXAMPLES": str(self.workdir / "examples"),
                "KUBECONFIG": str(self.cluster.kubeconfig), "NAMESPACE": self.namespace}

    def runner_pods(self) -> int:
        """Runner pods of the namespace not yet ended (``Succeeded`` or ``Failed``): what a
        pause or a terminate must bring to 0."""
        from kubernetes import client

        from longtask import constants

        pods = client.CoreV1Api(self.cluster.api_client()).list_namespaced_pod(
            self.namespace, label_selector=constants.LABEL_TASK_UID).items
        return sum(1 for p in pods
                   if p.status is None or p.status.phase not in ("Succeeded", "Failed"))

    def log(self, name: str) -> Path:
        """The log file of process ``name`` ("operator" or "api")."""
        return self.workdir / f"{name}.log"

    def stop(self) -> None:
        """SIGTERM the API and the operator, then stop Kubernetes and PostgreSQL."""
        for name in ("api", "operator"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        self.cluster.stop()
        self.pg.stop()


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} never answered: the process exited with "
                               f"{proc.returncode}\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if int(resp.status) == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s\n"
                               f"{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _spawn(name: str, args: Sequence[str], env: dict[str, str], workdir: Path
           ) -> subprocess.Popen[bytes]:
    with (workdir / f"{name}.log").open("ab") as out:
        return subprocess.Popen([sys.executable, *args], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _prepare_namespace(cluster: kube.KubeCluster, namespace: str, db_url: str) -> None:
    from kubernetes import client

    api = cluster.api_client()
    kube.apply_crds(api)
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=DATABASE_SECRET), string_data={"url": db_url}))
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name=RUNNER_ACCOUNT),
        automount_service_account_token=False))


def start(workdir: Path, *, organizations: Sequence[str] = ("atlan-demo",),
          namespace: str = "collect", progress_interval: float = 1.0,
          with_examples: bool = False) -> Stack:
    """Start everything; returns once the API answers ``/readyz``. With ``with_examples``,
    the example forms and submissions of :mod:`devcluster.examples` are loaded for the
    first organization, and its files written to ``workdir/examples``.

    Raises :class:`devcluster.kube.KubeBinariesMissing` (run ``make kube``) or
    ``RuntimeError`` with the failing process's log.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    pg = postgres.start()
    try:
        upgrade(pg.url)
        logins = postgres.make_login_roles(pg.url, "longtask_stack")
        conn = connect(pg.url)
        with conn.cursor() as cur:
            for slug in organizations:
                cur.execute("INSERT INTO collect.organizations (slug, name) VALUES (%s, %s)",
                            (slug, slug.replace("-", " ").title()))
        conn.commit()
        if with_examples:
            examples.load(conn, workdir / "examples", organizations[0])
        conn.close()
        cluster = kube.start(workdir=workdir / "kube")
    except BaseException:
        pg.stop()
        raise
    tokens = {org: secrets.token_urlsafe(24) for org in organizations}
    stack = Stack(workdir=workdir, pg=pg, cluster=cluster, namespace=namespace, tokens=tokens,
                  api_url=f"http://127.0.0.1:{kube.free_port()}",
                  operator_port=kube.free_port(),
                  role_urls={c: postgres.with_user(pg.url, *login.split(":", 1))
                             for c, login in logins.items()})
    try:
        _prepare_namespace(cluster, namespace, stack.role_urls["runner"])
        base_env = {**os.environ, **cluster.env(), "PYTHONUNBUFFERED": "1"}
        operator_env = {
            **base_env,
            "LONGTASK_DATABASE_URL": stack.role_urls["operator"],
            "LONGTASK_OPERATOR_RUNNER_IMAGE": cluster.runner_image,
            "LONGTASK_OPERATOR_IMAGE_PULL_POLICY": "Never",  # imported, never pulled
            "LONGTASK_OPERATOR_WATCH_NAMESPACES": namespace,
            "LONGTASK_OPERATOR_STANDALONE": "true",
            "LONGTASK_OPERATOR_PROGRESS_INTERVAL_SECONDS": str(progress_interval),
            "LONGTASK_OPERATOR_LIVENESS_ENDPOINT":
                f"http://127.0.0.1:{stack.operator_port}/healthz",
            "LONGTASK_OPERATOR_TERMINATION_GRACE_SECONDS": "15",
        }
        stack.procs["operator"] = _spawn("operator", ["-m", "longtask.operator"], operator_env,
                                         workdir)
        _wait_http(f"http://127.0.0.1:{stack.operator_port}/healthz",
                   stack.procs["operator"], stack.log("operator"), 60)
        entries = [{"sha256": hashlib.sha256(token.encode()).hexdigest(),
                    "subject": f"{org}-support", "role": "operator", "organizations": [org]}
                   for org, token in tokens.items()]
        api_env = {
            **base_env,
            "LONGTASK_DATABASE_URL": stack.role_urls["api"],
            "LONGTASK_API_HOST": "127.0.0.1",
            "LONGTASK_API_PORT": stack.api_url.rsplit(":", 1)[1],
            "LONGTASK_API_NAMESPACE": namespace,
            "LONGTASK_API_KUBECONFIG": str(cluster.kubeconfig),
            "LONGTASK_API_TOKENS": json.dumps({"tokens": entries}),
            "LONGTASK_API_SESSION_SECRET": secrets.token_urlsafe(32),
        }
        stack.procs["api"] = _spawn("api", ["-m", "longtask.api"], api_env, workdir)
        _wait_http(f"{stack.api_url}/readyz", stack.procs["api"], stack.log("api"), 60)
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def running(*, keep_data: bool = False, **kwargs: Any) -> Iterator[Stack]:
    """Context manager around :func:`start`, in a new temporary work folder that is removed
    afterwards (with ``keep_data``, left in place for a look at the logs and data)."""
    folder = Path(tempfile.mkdtemp(prefix="longtask-stack-"))
    try:
        stack = start(folder, **kwargs)
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        if not keep_data:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a stack until SIGINT, SIGTERM or SIGHUP, then stop everything it started and
    remove its temporary data; prints how to reach it. Returns the exit status: 0 after a
    stop signal, 1 when the stack could not start."""
    parser = argparse.ArgumentParser(prog="python -m devcluster.stack", description=(
        "Start PostgreSQL, the local Kubernetes control plane, the operator and the API; "
        "serve until Ctrl-C (or SIGTERM), then stop them all."))
    parser.add_argument("--keep-data", action="store_true",
                        help="leave the work folder (logs, data) in place after the stop")
    args = parser.parse_args(argv)
    with signals.stop_on_signals():
        try:
            with running(keep_data=args.keep_data, organizations=(examples.ORGANIZATION,),
                         with_examples=True) as stack:
                print(f"API:        {stack.api_url}  (docs: {stack.api_url}/docs)")
                print(f"console:    {stack.api_url}/console/  (sign in with a token below)")
                for org, token in stack.tokens.items():
                    print(f"token for {org}: {token}")
                print(f"kubectl:    kubectl -n {stack.namespace} get lt -w")
                print(f"database:   {stack.db_url}")
                print(f"examples:   {stack.workdir / 'examples'} (devcluster/examples.py)")
                print("For the README's examples, in another shell:")
                print(f"  export {shlex.join(f'{k}={v}' for k, v in stack.example_env().items())}")
                print(f"work folder: {stack.workdir} "
                      f"({'kept' if args.keep_data else 'removed'} after the stop)")
                print("Ctrl-C (or SIGTERM) stops everything.", flush=True)
                signals.wait()
        except signals.Interrupted as stop:
            print(f"{stop}: everything the stack started is stopped.", flush=True)
            return 0
        except RuntimeError as exc:  # a missing binary, or a process that never answered
            print(f"the stack did not start: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
