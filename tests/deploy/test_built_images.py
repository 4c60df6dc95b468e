"""The two images, really built (hack/build-images.sh, buildah) and run (podman, runc).

The session's ``built_images`` fixture builds both images cold into a private storage, then
again (cached), and prints their sizes and build times. These tests run what Kubernetes
would run: the runner's command under a read-only root without network, both images' user
and capabilities, what they hold and what they must not (a compiler, the test and demo
code, the build's CA bundle), the archives a kubelet would import, the migrations, and each
process's answer to SIGTERM sent to the container's PID 1: the runner while it waits on a
database that never answers, the operator against the local control plane, the API with
its health check.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import tarfile
import threading
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from deploy_support import (
    GRACE_SECONDS,
    IMAGE_KINDS,
    REPO,
    Containers,
    Images,
    Podman,
    Release,
    short_runroot,
    token_kubeconfig,
)

from devcluster.kube import KubeCluster, free_port
from longtask import constants, tasktypes

# The first test also waits for the session's cold build (conftest.COLD_BUILD_TIMEOUT).
pytestmark = pytest.mark.timeout(1800)

BASE_IMAGE = "localhost/longtask/python-base:3.11-bookworm"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
SITE_PACKAGES = "/opt/longtask/lib/python3.11/site-packages"


def python(podman: Podman, image: str, code: str, *options: str,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in ``image`` (the image's own PATH, user and environment)."""
    return podman.run_image(image, "-c", code, options=("--entrypoint", "python", *options),
                            check=check)


def shell(podman: Podman, image: str, script: str, *options: str,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    """``sh -c SCRIPT`` in ``image``."""
    return podman.run_image(image, "-c", script, options=("--entrypoint", "sh", *options),
                            check=check)


# --------------------------------------------------------------------------- the build


def test_the_build_reports_each_image_and_the_cached_build_is_faster(
        built_images: Images) -> None:
    for kind in IMAGE_KINDS:
        image = built_images.built[kind]
        assert image.tag == f"localhost/longtask/{kind}:{VERSION}"
        assert 100 < image.size_mb < 800, f"{kind}: {image.size_mb:.0f} MB"
        assert image.cached_seconds < image.cold_seconds, built_images.report()
    print("\n" + "\n".join(built_images.report()))


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_the_archive_holds_the_image_for_a_kubelet_to_import(
        built_images: Images, kind: str) -> None:
    image = built_images.built[kind]
    with tarfile.open(image.archive) as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        (manifest,) = json.load(member)
        config_file = archive.extractfile(manifest["Config"])
        assert config_file is not None
        config = json.load(config_file)["config"]

    assert manifest["RepoTags"] == [image.tag]
    assert config["User"] == "10001:10001"
    if kind == "operator":
        assert config["Healthcheck"]["Test"][0] == "CMD", config.get("Healthcheck")


def test_the_runner_archive_loads_into_an_empty_storage_and_runs(
        built_images: Images, tmp_path: Path) -> None:
    fresh = Podman(tmp_path / "root", short_runroot(), built_images.podman.driver)
    try:
        fresh("load", "--input", built_images.built["runner"].archive, timeout=300)
        out = fresh.run_image(built_images.tag("runner"), "--help").stdout
        assert "rollback" in out, out
    finally:
        fresh.remove_storage()


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_the_image_config_is_the_dockerfiles(built_images: Images, kind: str) -> None:
    info = built_images.podman.inspect(built_images.tag(kind))
    config = info["Config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    labels = config["Labels"]

    assert config["User"] == "10001:10001"
    assert config["WorkingDir"] == "/tmp"
    assert env["PATH"].startswith("/opt/longtask/bin:"), env["PATH"]
    assert env["PYTHONSAFEPATH"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.base.name"] == BASE_IMAGE
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")
    if kind == "runner":
        assert config["Entrypoint"] == ["python", "-m", "longtask.runner"]
    else:
        assert config["Entrypoint"] == ["tini", "--"]
        assert config["Cmd"] == ["python", "-m", "longtask.operator"]


# --------------------------------------------------------------------------- contents


def test_the_runner_answers_help_read_only_without_network(built_images: Images) -> None:
    out = built_images.podman.run_image(built_images.tag("runner"),
                                        options=("--read-only",)).stdout

    assert "run" in out and "rollback" in out, out


def test_the_runner_holds_every_task_type_and_no_operator_or_api_code(
        built_images: Images) -> None:
    script = ("import importlib.util as u, longtask.runner.cli, longtask.tasktypes as t; "
              "print(sorted(t.REGISTRY)); "
              "print([m for m in ('kopf', 'kubernetes', 'fastapi') if u.find_spec(m)])")

    out = python(built_images.podman, built_images.tag("runner"), script).stdout.splitlines()

    # Every type the registry holds here, where no plug-in is installed: the built-ins.
    assert out == [str(sorted(tasktypes.REGISTRY)), "[]"], out


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_it_runs_as_10001_with_no_capabilities(built_images: Images, kind: str) -> None:
    script = ("import os; print(os.getuid(), os.getgid(), os.getgroups()); "
              "print(*[l for l in open('/proc/self/status') if l.startswith('Cap')], sep='')")

    out = python(built_images.podman, built_images.tag(kind), script).stdout.splitlines()
    caps = dict(line.split(":\t") for line in out[1:] if line)

    assert out[0] == "10001 10001 [10001]", out
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0, caps


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_import_operator_is_the_standard_library_even_beside_the_package(
        built_images: Images, kind: str) -> None:
    # The working directory holds the package folder named operator: with PYTHONSAFEPATH
    # (the image's environment) it is not on sys.path.
    script = ("import importlib.util, operator; print(operator.__file__); "
              "print(importlib.util.find_spec('longtask.operator').origin)")

    out = python(built_images.podman, built_images.tag(kind), script,
                 "--workdir", f"{SITE_PACKAGES}/longtask").stdout.splitlines()

    assert out == ["/usr/lib/python3.11/operator.py",
                   f"{SITE_PACKAGES}/longtask/operator/__init__.py"], out


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_pip_check_is_clean(built_images: Images, kind: str) -> None:
    out = python(built_images.podman, built_images.tag(kind), "import runpy, sys; "
                 "sys.argv = ['pip', 'check']; runpy.run_module('pip', run_name='__main__')")

    assert "No broken requirements found." in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_no_compiler_and_no_test_or_demo_code(built_images: Images, kind: str) -> None:
    compilers = shell(built_images.podman, built_images.tag(kind),
                      "for c in gcc cc c++ g++ clang x86_64-linux-gnu-gcc; do "
                      "command -v $c; done; true").stdout.split()
    script = ("import importlib.util as u; print([m for m in "
              "('devcluster', 'demo', 'pytest', 'hypothesis', 'schemathesis', 'mypy') "
              "if u.find_spec(m)])")
    found = python(built_images.podman, built_images.tag(kind), script).stdout.strip()

    assert compilers == [], f"a compiler in the {kind} image: {compilers}"
    assert found == "[]", f"importable in the {kind} image: {found}"


def _certificates(pem: str) -> set[str]:
    """The base64 bodies of the certificates of a PEM bundle."""
    blocks = pem.split("-----BEGIN CERTIFICATE-----")[1:]
    return {"".join(b.split("-----END CERTIFICATE-----")[0].split()) for b in blocks}


def _added_certificates(bundle: Path) -> set[str]:
    """The certificates of this machine's ``bundle`` that Debian's ca-certificates package
    does not ship: the ones added here, such as a TLS-intercepting proxy's CA."""
    shipped: set[str] = set()
    for path in Path("/usr/share/ca-certificates").rglob("*.crt"):
        shipped |= _certificates(path.read_text(errors="replace"))
    return _certificates(bundle.read_text()) - shipped


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_the_build_ca_bundle_is_not_left_in_the_image(built_images: Images, kind: str) -> None:
    """The build mounts this machine's CA bundle over the image's for its RUN steps only:
    the image keeps the base image's bundle byte for byte, none of the certificates added
    on this machine (a proxy's CA) is in any file of the image where certificates live, and
    no pip configuration was left behind."""
    podman = built_images.podman
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    read = "import sys; sys.stdout.write(open(sys.argv[1]).read())"
    base_pem = podman.run_image(BASE_IMAGE, "python3", "-c", read, bundle).stdout
    image_pem = podman.run_image(built_images.tag(kind), "-c", read, bundle,
                                 options=("--entrypoint", "python")).stdout
    host = Path(os.environ.get("LONGTASK_BUILD_CA") or os.environ.get("SSL_CERT_FILE")
                or bundle)
    added = _added_certificates(host)
    # A whole 64-character PEM line near each one's end (in its signature): its own, and
    # found by grep in any PEM file that holds it.
    needles = "\n".join(body[64 * (len(body) // 64 - 1):][:64] for body in sorted(added))
    found = shell(podman, built_images.tag(kind),
                  "[ -n \"$NEEDLES\" ] || exit 0; printf '%s\\n' \"$NEEDLES\" > /tmp/needles; "
                  "grep -rlF -f /tmp/needles /etc /opt /usr/local /usr/share/ca-certificates "
                  "/usr/lib/ssl /root /var 2>/dev/null; true",
                  "--env", f"NEEDLES={needles}", "--user", "0").stdout.split()
    leftovers = shell(podman, built_images.tag(kind),
                      "ls -d /etc/pip.conf /etc/xdg/pip /root/.config/pip /root/.pip "
                      "/opt/longtask/pip.conf 2>/dev/null; true", "--user", "0").stdout.split()

    assert image_pem == base_pem, "the image's CA bundle is not the base image's"
    assert found == [], f"a CA added on this machine is in the {kind} image: {found}"
    assert leftovers == [], leftovers
    print(f"\n{kind}: {len(added)} CA(s) added on this machine, none in the image")


def test_the_migrations_run_from_the_operator_image(built_images: Images,
                                                     pg_server_url: str) -> None:
    name = f"image_migrate_{os.getpid()}"
    admin = psycopg2.connect(pg_server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    url = pg_server_url.rpartition("/")[0] + f"/{name}"
    try:
        built_images.podman.run_image(
            built_images.tag("operator"), "longtask-migrate", "upgrade", "head",
            options=("--network", "host", "--read-only", "--env", f"LONGTASK_DATABASE_URL={url}"),
            timeout=180)
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('longtask.tasks') IS NOT NULL")
            row = cur.fetchone()
        assert row == (True,), "the migrations did not create longtask.tasks"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


# --------------------------------------------------------------------------- SIGTERM


class BlackHole:
    """A TCP listener on loopback that accepts connections and never answers (a database
    host that is up but hung). ``accepted`` is set at the first connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self.sock.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    """A listener that accepts and never answers; closed after the test."""
    hole = BlackHole()
    yield hole
    hole.close()


def test_the_runner_stops_on_sigterm_while_connecting_and_exits_75(
        built_images: Images, containers: Containers, black_hole: BlackHole) -> None:
    url = f"postgresql://longtask@127.0.0.1:{black_hole.port}/longtask"
    name = containers.start(built_images.tag("runner"), "run", "--task", str(uuid.uuid4()),
                            "--type", "Export", "--organization", "acme",
                            options=("--read-only", "--env", f"LONGTASK_DATABASE_URL={url}"))
    assert black_hole.accepted.wait(60), f"the runner never connected:\n{containers.logs(name)}"

    code, seconds = containers.stop_pid1(name)

    assert code == constants.EXIT_STOPPED, f"exit {code}:\n{containers.logs(name)}"
    print(f"\nrunner: exit {code} {seconds:.1f} s after SIGTERM (grace {GRACE_SECONDS} s)")


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    """``(status, body)`` of a GET, with a bearer token if given."""
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def _readable_copy(source: Path, folder: Path) -> Path:
    """A copy of a root-only file that the images' user 10001 can read when mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    target.write_bytes(source.read_bytes())
    target.chmod(0o644)
    return target


@pytest.mark.cluster
def test_the_operator_answers_its_health_check_and_stops_on_sigterm_with_exit_0(
        built_images: Images, containers: Containers, kube_cluster: KubeCluster,
        kube_namespace: str, project_crds: list[str], db_url: str, tmp_path: Path) -> None:
    kubeconfig = _readable_copy(kube_cluster.kubeconfig, tmp_path / "kube")
    port = free_port()
    health = f"http://127.0.0.1:{port}/healthz"
    env = {"KUBECONFIG": "/etc/longtask/kubeconfig", "LONGTASK_DATABASE_URL": db_url,
           "LONGTASK_OPERATOR_RUNNER_IMAGE": built_images.tag("runner"),
           "LONGTASK_OPERATOR_WATCH_NAMESPACES": kube_namespace,
           "LONGTASK_OPERATOR_STANDALONE": "true",
           "LONGTASK_OPERATOR_LIVENESS_ENDPOINT": health, "LONGTASK_HEALTHCHECK_URL": health}
    options = ("--read-only", "--volume", f"{kubeconfig}:/etc/longtask/kubeconfig:ro",
               *[a for k, v in env.items() for a in ("--env", f"{k}={v}")])

    name = containers.start(built_images.tag("operator"), options=options)
    containers.wait_http_ok(name, health)
    checked = containers.healthcheck(name)
    assert checked.returncode == 0, f"HEALTHCHECK: {checked.stdout}{checked.stderr}"
    code, seconds = containers.stop_pid1(name)

    assert code == 0, f"exit {code}:\n{containers.logs(name)}"
    print(f"\noperator: exit {code} {seconds:.1f} s after SIGTERM to tini")


@pytest.mark.cluster
def test_the_api_answers_healthz_its_health_check_passes_and_it_stops_on_sigterm(
        built_images: Images, containers: Containers, kube_cluster: KubeCluster,
        core_v1: Any, chart_release: Release, db_url: str, tmp_path: Path) -> None:
    """The API from the operator image with the chart's environment and tokens, logged in
    as its ServiceAccount with a real token."""
    ns = chart_release.namespace
    files = tmp_path / "api"
    files.mkdir()
    kubeconfig = token_kubeconfig(kube_cluster, core_v1, ns,
                                  chart_release.service_account("api"), files / "kubeconfig")
    kubeconfig.chmod(0o644)
    (tokens,) = chart_release.find("Secret", f"{chart_release.fullname}-api-tokens")
    (admin,) = chart_release.find("Secret", f"{chart_release.fullname}-api-admin-token")
    (session,) = chart_release.find("Secret", f"{chart_release.fullname}-api-session")
    (files / "tokens.yaml").write_text(tokens["stringData"]["tokens.yaml"])
    (files / "tokens.yaml").chmod(0o644)
    token = base64.b64decode(admin["data"]["token"]).decode()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**chart_release.container_env("api"), "LONGTASK_DATABASE_URL": db_url,
           "LONGTASK_API_KUBECONFIG": "/etc/longtask/api/kubeconfig",
           "LONGTASK_API_TOKENS_FILE": "/etc/longtask/api/tokens.yaml",
           # the chart's secretKeyRef, as the kubelet would resolve it
           "LONGTASK_API_SESSION_SECRET": base64.b64decode(session["data"]["secret"]).decode(),
           "LONGTASK_API_HOST": "127.0.0.1", "LONGTASK_API_PORT": str(port),
           "LONGTASK_HEALTHCHECK_URL": f"{base}/healthz"}
    options = ("--read-only", "--volume", f"{files}:/etc/longtask/api:ro",
               *[a for k, v in env.items() for a in ("--env", f"{k}={v}")])

    name = containers.start(built_images.tag("operator"), "python", "-m", "longtask.api",
                            options=options)
    containers.wait_http_ok(name, f"{base}/healthz")
    checked = containers.healthcheck(name)
    ready = http_get(f"{base}/readyz")
    listed = http_get(f"{base}/v1/tasks", token)
    refused = http_get(f"{base}/v1/tasks")
    page, script = http_get(f"{base}/console/"), http_get(f"{base}/console/static/console.js")
    code, seconds = containers.stop_pid1(name)

    assert checked.returncode == 0, f"HEALTHCHECK: {checked.stdout}{checked.stderr}"
    assert ready[0] == 200, f"/readyz: {ready}\n{containers.logs(name)}"
    assert listed[0] == 200, f"GET /v1/tasks with the chart's admin token: {listed}"
    assert refused[0] == 401, "a call without a token must be refused"
    # The console's page and script are package data: the image must carry them.
    assert page[0] == 200 and b"LongTask console" in page[1], f"/console/: {page[0]}"
    assert script[0] == 200 and b"EventSource" in script[1], f"console.js: {script[0]}"
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught: tini reports
    # the conventional 128 + 15.
    log = containers.logs(name)
    assert code == 128 + signal.SIGTERM, f"exit {code}:\n{log}"
    assert "Application shutdown complete" in log, log
    print(f"\napi: exit {code} {seconds:.1f} s after SIGTERM to tini")
