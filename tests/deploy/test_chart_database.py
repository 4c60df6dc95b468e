"""The chart's database roles: one Secret per component, and the bundled PostgreSQL's
bootstrap script run against a real server, after which the migration runs as the
non-superuser owner and each component logs in as its own role."""

from __future__ import annotations

import base64
import os
import subprocess
import urllib.parse
from collections.abc import Mapping
from typing import Any

import psycopg2
import pytest
from deploy_support import CHART, find, render

from devcluster import postgres
from longtask.db.migrate import upgrade

COMPONENT_SECRETS = {"owner": "lt-longtask-database", "api": "lt-longtask-database-api",
                     "operator": "lt-longtask-database-operator",
                     "runner": "lt-longtask-database-runner"}


def _env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _url_secret(env: Mapping[str, Any]) -> str:
    ref = env["LONGTASK_DATABASE_URL"]["secretKeyRef"]
    return f"{ref['name']}/{ref['key']}"


def _deployment_env(objects: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    (deployment,) = find(objects, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    return {c["name"]: _env(c) for c in [*pod.get("initContainers", []), *pod["containers"]]}


def _decoded(secret: Mapping[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_the_bundled_postgresql_gives_each_component_its_own_secret() -> None:
    objects = render(sets=["watch.namespaces[0]=team-a"])

    operator = _deployment_env(objects, "lt-longtask-operator")
    api = _deployment_env(objects, "lt-longtask-api")
    assert _url_secret(operator["migrate"]) == "lt-longtask-database/url", "migrations: owner"
    assert _url_secret(operator["operator"]) == "lt-longtask-database-operator/url"
    assert _url_secret(api["api"]) == "lt-longtask-database-api/url"
    assert operator["operator"]["LONGTASK_OPERATOR_DATABASE_SECRET_NAME"] == \
        "lt-longtask-database-runner", "the runner Jobs read the runner's own Secret"
    placed = {(s["metadata"]["name"], s["metadata"]["namespace"])
              for s in find(objects, "Secret") if "database" in s["metadata"]["name"]}
    assert placed == {("lt-longtask-database", "longtask"),
                      ("lt-longtask-database-api", "longtask"),
                      ("lt-longtask-database-operator", "longtask"),
                      ("lt-longtask-database-runner", "longtask"),
                      ("lt-longtask-database-runner", "team-a")}, \
        "only the runner's URL goes to the task namespaces"
    users = {name: urllib.parse.urlsplit(_decoded(s)["url"]).username
             for s in find(objects, "Secret") for name in [s["metadata"]["name"]]
             if name in COMPONENT_SECRETS.values()}
    assert users == {"lt-longtask-database": "longtask",
                     "lt-longtask-database-api": "longtask_api_user",
                     "lt-longtask-database-operator": "longtask_operator_user",
                     "lt-longtask-database-runner": "longtask_runner_user"}
    (statefulset,) = find(objects, "StatefulSet", "lt-longtask-postgresql")
    pg_env = _env(statefulset["spec"]["template"]["spec"]["containers"][0])
    assert pg_env["POSTGRES_USER"] == "postgres", "the application user is not the superuser"
    (pg_secret,) = find(objects, "Secret", "lt-longtask-postgresql")
    passwords = _decoded(pg_secret)
    keys = ("password", "superuser-password", "api-password", "operator-password",
            "runner-password")
    assert len({passwords[k] for k in keys}) == len(keys), "one random password per role"


def test_an_existing_server_names_one_secret_per_component() -> None:
    objects = render([CHART / "ci" / "existing-database-values.yaml"],
                     sets=["database.api.existingSecret=db-api",
                           "database.operator.existingSecret=db-operator",
                           "database.operator.existingSecretKey=dsn",
                           "database.runner.existingSecret=db-runner"])

    operator = _deployment_env(objects, "lt-longtask-operator")
    api = _deployment_env(objects, "lt-longtask-api")
    assert _url_secret(operator["migrate"]) == "collect-database/url"
    assert _url_secret(operator["operator"]) == "db-operator/dsn"
    assert _url_secret(api["api"]) == "db-api/url"
    assert operator["operator"]["LONGTASK_OPERATOR_DATABASE_SECRET_NAME"] == "db-runner"
    assert find(objects, "Secret") == [], "the Secrets are given, none is made"


def test_the_ci_values_of_an_existing_server_with_roles_use_four_secrets() -> None:
    objects = render([CHART / "ci" / "existing-database-roles-values.yaml"])

    operator = _deployment_env(objects, "lt-longtask-operator")
    refs = {_url_secret(operator["migrate"]), _url_secret(operator["operator"]),
            _url_secret(_deployment_env(objects, "lt-longtask-api")["api"]),
            operator["operator"]["LONGTASK_OPERATOR_DATABASE_SECRET_NAME"] + "/url"}
    assert refs == {f"collect-database-{c}/url" for c in ("owner", "operator", "api", "runner")}


@pytest.mark.timeout(120)
def test_the_bootstrap_script_makes_roles_the_migration_and_each_component_use() -> None:
    objects = render()
    (config,) = find(objects, "ConfigMap", "lt-longtask-postgresql-bootstrap")
    script = config["data"]["10-longtask-roles.sh"]
    passwords = _decoded(find(objects, "Secret", "lt-longtask-postgresql")[0])
    urls = {c: _decoded(find(objects, "Secret", name)[0])["url"]
            for c, name in COMPONENT_SECRETS.items()}

    # A server of its own: the script makes the group roles, which are the server's.
    server = postgres.start()
    try:
        admin = psycopg2.connect(server.url)
        admin.autocommit = True
        with admin.cursor() as cur:  # what the image's entrypoint does before the scripts
            cur.execute("CREATE DATABASE longtask")
        env = {**os.environ, "PATH": f"{server.bindir}:{os.environ['PATH']}",
               "PGHOST": "127.0.0.1", "PGPORT": str(server.port),
               "POSTGRES_USER": "postgres", "POSTGRES_DB": "longtask",
               "LONGTASK_OWNER": passwords["username"],
               "LONGTASK_OWNER_PASSWORD": passwords["password"],
               **{f"LONGTASK_{c.upper()}_PASSWORD": passwords[f"{c}-password"]
                  for c in ("api", "operator", "runner")}}
        done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr

        def local(url: str) -> str:
            parts = urllib.parse.urlsplit(url)
            login = parts.netloc.rpartition("@")[0]
            return urllib.parse.urlunsplit(parts._replace(
                netloc=f"{login}@127.0.0.1:{server.port}"))

        upgrade(local(urls["owner"]))  # as the owner: no superuser, may not create roles
        for component in ("api", "operator", "runner"):
            conn = psycopg2.connect(local(urls[component]))
            with conn.cursor() as cur:
                cur.execute("SELECT current_user, rolsuper, pg_has_role(current_user, %s, "
                            "'MEMBER') FROM pg_roles WHERE rolname = current_user",
                            (f"longtask_{component}",))
                assert cur.fetchone() == (f"longtask_{component}_user", False, True)
                cur.execute("SELECT has_table_privilege('longtask.tasks', 'SELECT')")
                assert cur.fetchone() == (True,), f"{component} reads the task record"
            conn.close()
        with admin.cursor() as cur:
            cur.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = 'longtask'")
            assert cur.fetchone() == (False, False), "the owner is no superuser"
            cur.execute("SELECT has_database_privilege('public', 'longtask', 'CONNECT')")
            assert cur.fetchone() == (False,), "a role of no component may not connect"
        admin.close()
    finally:
        server.stop()
