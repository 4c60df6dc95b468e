"""The Helm chart: lint, render per option, one CRD source, documented values, safe pods."""

from __future__ import annotations

import base64
import json
import re
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    CHART,
    CI_VALUES,
    REPO,
    find,
    helm,
    kube_version,
    render,
    sample_run_job,
    template_args,
)
from longtask.api.settings import ApiSettings
from longtask.operator.settings import OperatorSettings

from longtask.settings import RunnerSettings

CRD_FILE = REPO / "crds" / "longtask.yaml"
LEASE_ROLE = "lt-longtask-operator-leader-election"


def values_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


def containers(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]
    pod = spec.get("template", {}).get("spec") if obj["kind"] != "Pod" else spec
    return [*pod.get("initContainers", []), *pod["containers"]] if pod else []


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --------------------------------------------------------------------------- lint, render


def test_helm_lint_passes_strict_for_the_defaults_and_every_ci_values_file() -> None:
    for values in [None, *CI_VALUES]:
        args = ["lint", str(CHART), "--strict", "--kube-version", kube_version()]
        if values:
            args += ["--values", str(values)]
        out = helm(*args)
        assert "0 chart(s) failed" in out.stdout, out.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=values_id)
def test_every_ci_values_file_renders(values: Path) -> None:
    objects = render([values])

    assert find(objects, "Deployment"), f"{values.name} renders no Deployment"


def test_the_defaults_render_the_whole_trial_install() -> None:
    objects = render()

    kinds = sorted({o["kind"] for o in objects})
    assert kinds == sorted({"CustomResourceDefinition", "ServiceAccount", "Role", "RoleBinding",
                            "Secret", "ConfigMap", "Service", "StatefulSet", "Deployment", "Pod",
                            "PodDisruptionBudget", "NetworkPolicy",
                            "ValidatingAdmissionPolicy",
                            "ValidatingAdmissionPolicyBinding"}), kinds
    assert [d["metadata"]["name"] for d in find(objects, "Deployment")] == [
        "lt-longtask-api", "lt-longtask-operator"]
    statefulset = find(objects, "StatefulSet")[0]
    assert statefulset["metadata"]["annotations"]["longtask/not-for-production"] == "true"


def test_an_unknown_value_is_refused_by_the_schema() -> None:
    out = helm(*template_args(sets=["operator.replicaCount=2"]), check=False)

    assert out.returncode != 0, "a key the chart does not know must fail the install"
    assert "additional properties 'replicacount' not allowed" in out.stderr.lower() or \
        "replicaCount" in out.stderr, out.stderr


def test_a_wrong_type_is_refused_by_the_schema() -> None:
    out = helm(*template_args(sets=["runner.backoffLimit=many"]), check=False)

    assert out.returncode != 0 and "backoffLimit" in out.stderr, out.stderr


def test_no_database_at_all_is_refused() -> None:
    out = helm(*template_args(sets=["postgresql.enabled=false"]), check=False)

    assert out.returncode != 0, "neither the bundled PostgreSQL nor an existing one"


def test_the_api_namespace_must_be_one_the_operator_watches() -> None:
    out = helm(*template_args(sets=["api.namespace=elsewhere"]), check=False)

    assert out.returncode != 0 and "api.namespace" in out.stderr, out.stderr


# --------------------------------------------------------------------------- the CRD


def test_the_rendered_crd_is_crds_longtask_yaml_with_only_metadata_added() -> None:
    source = yaml.safe_load(CRD_FILE.read_text())
    rendered = find(render(), "CustomResourceDefinition")

    assert len(rendered) == 1
    crd = dict(rendered[0])
    assert crd["spec"] == source["spec"], "the chart's CRD spec differs from crds/longtask.yaml"
    labels = crd["metadata"]["labels"]
    assert source["metadata"]["labels"].items() <= labels.items()
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_the_crd_link_points_at_the_one_source() -> None:
    link = CHART / "files" / "crds" / "longtask.yaml"

    assert link.is_symlink() and link.resolve() == CRD_FILE.resolve()


def test_the_keep_switch_and_the_install_switch() -> None:
    not_kept = find(render(sets=["crds.keep=false"]), "CustomResourceDefinition")
    absent = find(render(sets=["crds.install=false"]), "CustomResourceDefinition")

    assert "annotations" not in not_kept[0]["metadata"], not_kept[0]["metadata"]
    assert absent == []


def test_helm_package_stores_the_crd_itself_not_the_link(tmp_path: Path) -> None:
    helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("longtask-*.tgz")

    with tarfile.open(archive) as tar:
        member = tar.getmember("longtask/files/crds/longtask.yaml")
        assert member.isfile(), "the package holds a link, not the CRD"
        packaged = tar.extractfile(member)
        assert packaged is not None
        assert packaged.read() == CRD_FILE.read_bytes()


# --------------------------------------------------------------------------- options


def test_existing_database_makes_no_postgresql_and_no_database_secret() -> None:
    objects = render([CHART / "ci" / "existing-database-values.yaml"])

    assert find(objects, "StatefulSet") == []
    secrets = [s["metadata"]["name"] for s in find(objects, "Secret")]
    assert secrets == [], f"the Secrets are given, none should be made: {secrets}"
    operator = find(objects, "Deployment", "lt-longtask-operator")[0]
    env = env_of(containers(operator)[-1])
    assert env["LONGTASK_DATABASE_URL"] == {
        "secretKeyRef": {"name": "collect-database", "key": "url"}}
    assert env["LONGTASK_OPERATOR_DATABASE_SECRET_NAME"] == "collect-database"


def test_a_database_url_becomes_a_secret_in_every_task_namespace() -> None:
    objects = render([CHART / "ci" / "database-url-values.yaml"],
                     sets=["watch.namespaces={team-a}"])

    secrets = find(objects, "Secret", "lt-longtask-database")
    assert sorted(s["metadata"]["namespace"] for s in secrets) == ["longtask", "team-a"]
    assert find(objects, "Role", LEASE_ROLE) == [] and find(objects, "Service") == []
    operator = find(objects, "Deployment", "lt-longtask-operator")[0]
    assert operator["spec"]["replicas"] == 1
    assert env_of(containers(operator)[-1])["LONGTASK_OPERATOR_STANDALONE"] == "true"


def test_ingress_routes_to_the_api_service() -> None:
    objects = render([CHART / "ci" / "ingress-values.yaml"])

    (ingress,) = find(objects, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "lt-longtask-api", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "longtask-tls"


def test_the_console_session_secret_is_generated_once_and_its_cookie_secure_behind_tls(
) -> None:
    plain, behind_tls = render(), render([CHART / "ci" / "ingress-values.yaml"])
    given = render(sets=["api.session.existingSecret=console-key",
                         "api.session.existingSecretKey=key"])

    (secret,) = [s for s in find(plain, "Secret")
                 if s["metadata"]["name"] == "lt-longtask-api-session"]
    assert len(base64.b64decode(secret["data"]["secret"])) == 48
    env = env_of(containers(find(plain, "Deployment", "lt-longtask-api")[0])[0])
    assert env["LONGTASK_API_SESSION_SECRET"] == {
        "secretKeyRef": {"name": "lt-longtask-api-session", "key": "secret"}}
    assert "LONGTASK_API_SESSION_COOKIE_SECURE" not in env
    tls_env = env_of(containers(find(behind_tls, "Deployment", "lt-longtask-api")[0])[0])
    assert tls_env["LONGTASK_API_SESSION_COOKIE_SECURE"] == "true"
    given_env = env_of(containers(find(given, "Deployment", "lt-longtask-api")[0])[0])
    assert given_env["LONGTASK_API_SESSION_SECRET"] == {
        "secretKeyRef": {"name": "console-key", "key": "key"}}
    assert "lt-longtask-api-session" not in [s["metadata"]["name"]
                                             for s in find(given, "Secret")]


def test_cluster_wide_uses_a_cluster_role_and_watches_every_namespace() -> None:
    objects = render([CHART / "ci" / "cluster-wide-values.yaml"])

    assert [r["metadata"]["name"] for r in find(objects, "ClusterRole")] == [
        "lt-longtask-operator"]
    (lease_role,) = find(objects, "Role", LEASE_ROLE)
    assert lease_role["metadata"]["namespace"] == "longtask", "the Lease's rights stay local"
    operator_roles = [r for r in find(objects, "Role")
                      if r["metadata"]["name"] == "lt-longtask-operator"]
    assert operator_roles == []
    env = env_of(containers(find(objects, "Deployment", "lt-longtask-operator")[0])[-1])
    assert env["LONGTASK_OPERATOR_WATCH_NAMESPACES"] == ""
    runners = find(objects, "ServiceAccount", "lt-longtask-runner")
    assert sorted(r["metadata"]["namespace"] for r in runners) == [
        "longtask", "longtask-ci-team-a"]


def test_namespaced_mode_has_a_role_in_each_watched_namespace_and_the_lease_in_one() -> None:
    objects = render([CHART / "ci" / "namespaces-values.yaml"])
    watched = ["longtask", "longtask-ci-team-a", "longtask-ci-team-b"]

    roles = [r for r in find(objects, "Role") if r["metadata"]["name"] == "lt-longtask-operator"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == watched
    assert [r["metadata"]["namespace"] for r in find(objects, "Role", LEASE_ROLE)] == ["longtask"]
    env = env_of(containers(find(objects, "Deployment", "lt-longtask-operator")[0])[-1])
    assert env["LONGTASK_OPERATOR_WATCH_NAMESPACES"] == ",".join(watched)
    (api_role,) = [r for r in find(objects, "Role") if r["metadata"]["name"] == "lt-longtask-api"]
    assert api_role["metadata"]["namespace"] == "longtask-ci-team-b"
    assert find(objects, "ClusterRole") == []


# --------------------------------------------------------------------------- settings


def test_every_operator_variable_is_a_field_of_operator_settings() -> None:
    objects = render()
    env = env_of(containers(find(objects, "Deployment", "lt-longtask-operator")[0])[-1])
    fields = {f"LONGTASK_OPERATOR_{name.upper()}" for name in OperatorSettings.model_fields}

    unknown = sorted(k for k in env if k.startswith("LONGTASK_OPERATOR_") and k not in fields)
    assert unknown == [], f"the operator reads no such settings: {unknown}"
    assert env["LONGTASK_OPERATOR_RUNNER_IMAGE"] == "longtask-runner:0.1.0"
    assert env["LONGTASK_OPERATOR_RUNNER_SERVICE_ACCOUNT"] == "lt-longtask-runner"


def test_the_operator_settings_accept_what_the_chart_passes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render()
    env = env_of(containers(find(objects, "Deployment", "lt-longtask-operator")[0])[-1])
    for name, value in env.items():
        if name.startswith("LONGTASK_OPERATOR_"):
            monkeypatch.setenv(name, value)

    settings = OperatorSettings()  # type: ignore[call-arg]

    assert settings.namespaces == ("longtask",)
    assert settings.default_resources() == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                            "limits": {"memory": "1Gi"}}
    assert (settings.standalone, settings.lease_name, settings.lease_namespace) == (
        False, "lt-longtask-operator", "longtask")
    assert (settings.lease_duration_seconds, settings.renew_deadline_seconds,
            settings.retry_period_seconds) == (8, 5, 1)


def _operator_env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return env_of(containers(find(objects, "Deployment", "lt-longtask-operator")[0])[-1])


def test_runner_settings_reach_the_operator_as_a_json_object(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = tmp_path / "runner-settings-values.yaml"
    values.write_text('runner:\n  settings:\n'
                      '    export_read_connections: "1"\n    chunk_target_seconds: "0.5"\n')
    env = _operator_env(render([values]))

    given = {"export_read_connections": "1", "chunk_target_seconds": "0.5"}
    assert json.loads(env["LONGTASK_OPERATOR_RUNNER_SETTINGS"]) == given
    for name, value in env.items():
        if name.startswith("LONGTASK_OPERATOR_"):
            monkeypatch.setenv(name, value)
    assert OperatorSettings().runner_settings == given  # type: ignore[call-arg]


def test_no_runner_settings_means_no_variable() -> None:
    for sets in ([], ["runner.settings=null"]):
        env = _operator_env(render(sets=sets))
        assert "LONGTASK_OPERATOR_RUNNER_SETTINGS" not in env, (sets, env)


def test_the_webhooks_secret_is_mounted_read_only_and_named_to_the_operator() -> None:
    assert "LONGTASK_OPERATOR_WEBHOOKS_FILE" not in _operator_env(render()), "off by default"
    objects = render(sets=["operator.webhooks.existingSecret=lt-hooks",
                           "operator.webhooks.existingSecretKey=hooks.yaml"])
    deployment = find(objects, "Deployment", "lt-longtask-operator")[0]
    container = containers(deployment)[-1]
    path = env_of(container)["LONGTASK_OPERATOR_WEBHOOKS_FILE"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "webhooks")
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/longtask/webhooks", True)
    assert path == "/etc/longtask/webhooks/webhooks.yaml"
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "webhooks")
    assert volume["secret"] == {"secretName": "lt-hooks",
                                "items": [{"key": "hooks.yaml", "path": "webhooks.yaml"}]}


def test_the_schema_refuses_an_unknown_runner_setting_and_a_number() -> None:
    unknown = helm(*template_args(), "--set-string", "runner.settings.chunk_size=100",
                   check=False)
    number = helm(*template_args(sets=["runner.settings.chunk_min_rows=100"]), check=False)

    assert unknown.returncode != 0 and "chunk_size" in unknown.stderr, unknown.stderr
    assert number.returncode != 0 and "chunk_min_rows" in number.stderr \
        and "want string" in number.stderr, number.stderr


def test_the_schema_knows_exactly_the_runner_settings() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    settings = schema["properties"]["runner"]["properties"]["settings"]

    assert settings["propertyNames"]["enum"] == sorted(RunnerSettings.model_fields)


def test_every_api_variable_is_a_field_of_api_settings() -> None:
    objects = render()
    env = env_of(containers(find(objects, "Deployment", "lt-longtask-api")[0])[0])
    fields = {f"LONGTASK_API_{name.upper()}" for name in ApiSettings.model_fields}

    unknown = sorted(k for k in env if k.startswith("LONGTASK_API_") and k not in fields)
    assert unknown == [], f"the API reads no such settings: {unknown}"
    assert env["LONGTASK_API_NAMESPACE"] == "longtask"


def test_the_generated_admin_token_matches_the_hash_the_api_gets() -> None:
    import base64
    import hashlib

    objects = render()
    (admin,) = find(objects, "Secret", "lt-longtask-api-admin-token")
    (tokens,) = find(objects, "Secret", "lt-longtask-api-tokens")
    token = base64.b64decode(admin["data"]["token"]).decode()
    document = yaml.safe_load(tokens["stringData"]["tokens.yaml"])

    assert document["tokens"][0]["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert document["tokens"][0]["role"] == "admin"


# --------------------------------------------------------------------------- pods


@pytest.mark.parametrize("values", [None, *CI_VALUES],
                         ids=lambda v: values_id(v) if v else "default")
def test_every_container_runs_non_root_with_a_read_only_root(values: Path | None) -> None:
    objects = render([values] if values else [])
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Pod")]

    for obj in workloads:
        for container in containers(obj):
            context = container["securityContext"]
            where = f"{obj['kind']}/{obj['metadata']['name']} container {container['name']}"
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["runAsNonRoot"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where


def test_the_operator_is_two_elected_replicas_replaced_by_recreate_with_a_liveness_probe(
        ) -> None:
    operator = find(render(), "Deployment", "lt-longtask-operator")[0]

    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert env_of(container)["LONGTASK_OPERATOR_LIVENESS_ENDPOINT"] == \
        "http://0.0.0.0:8081/healthz"
    (init,) = operator["spec"]["template"]["spec"]["initContainers"]
    assert init["args"] == ["longtask-migrate", "upgrade", "head"]


def test_the_lease_role_grants_the_operator_its_one_lease() -> None:
    objects = render(sets=["operator.leaderElection.leaseName=ops-lease"])

    (role,) = find(objects, "Role", LEASE_ROLE)
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["ops-lease"], "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]}]
    (binding,) = find(objects, "RoleBinding", LEASE_ROLE)
    assert binding["roleRef"]["name"] == LEASE_ROLE
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "lt-longtask-operator",
                                    "namespace": "longtask"}]
    env = _operator_env(objects)
    assert env["LONGTASK_OPERATOR_LEASE_NAME"] == "ops-lease"


@pytest.mark.parametrize(("sets", "message"), [
    (["operator.leaderElection.enabled=false"], "needs operator.leaderElection.enabled"),
    (["operator.leaderElection.renewDeadlineSeconds=8"], "greater than renewDeadlineSeconds"),
    (["operator.leaderElection.retryPeriodSeconds=5"], "1.2 x retryPeriodSeconds"),
], ids=["replicas-without-election", "deadline-not-below-lease", "retry-too-long"])
def test_the_chart_refuses_replicas_that_could_act_at_once(sets: list[str],
                                                           message: str) -> None:
    out = helm(*template_args(sets=sets), check=False)

    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_the_runner_service_account_mounts_no_token_and_nothing_binds_it() -> None:
    objects = render([CHART / "ci" / "cluster-wide-values.yaml"])

    runners = find(objects, "ServiceAccount", "lt-longtask-runner")
    assert runners and all(r["automountServiceAccountToken"] is False for r in runners)
    bindings = find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding")
    subjects = [s["name"] for b in bindings for s in b["subjects"]]
    assert "lt-longtask-runner" not in subjects, subjects


# --------------------------------------------------------------------------- documentation


def _values_leaves(node: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of values.yaml whose value is not a nested group of settings."""
    leaves: list[str] = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in _FREE_FORM:
            leaves += _values_leaves(value, f"{path}.")
        else:
            leaves.append(path)
    return leaves


_FREE_FORM = {f"{c}.resources" for c in ("operator", "api", "runner", "postgresql")}


def _comment_blocks() -> dict[str, str]:
    """``path -> comment text`` for every key of values.yaml preceded by a ``# --`` block."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if stripped.startswith("# -- "):
                block = [stripped]
            elif block:
                block.append(stripped)
            continue
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        if block:
            found[".".join(k for _, k in stack)] = " ".join(block)
        block = []
    return found


def test_every_value_is_documented_with_a_sentence_and_an_example() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    comments = _comment_blocks()

    undocumented = [p for p in _values_leaves(values) if p not in comments]
    assert undocumented == [], f"values without a '# -- sentence' comment: {undocumented}"
    no_example = [p for p, text in comments.items() if "# Example:" not in text]
    assert no_example == [], f"values without an '# Example:' line: {no_example}"
    no_sentence = [p for p, text in comments.items()
                   if not text.split("# Example:")[0].rstrip().endswith(".")]
    assert no_sentence == [], f"descriptions that are not a sentence: {no_sentence}"


def test_the_schema_knows_exactly_the_values_and_refuses_others_everywhere() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def schema_leaves(node: Mapping[str, Any], prefix: str = "") -> list[str]:
        leaves: list[str] = []
        for key, sub in node.get("properties", {}).items():
            path = f"{prefix}{key}"
            if sub.get("properties") and path not in _FREE_FORM:
                assert sub.get("additionalProperties") is False, f"{path} accepts unknown keys"
                leaves += schema_leaves(sub, f"{path}.")
            else:
                leaves.append(path)
        return leaves

    assert schema["additionalProperties"] is False
    assert sorted(schema_leaves(schema)) == sorted(_values_leaves(values))


def test_the_chart_readme_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    missing = [p for p in _values_leaves(values) if f"`{p}`" not in readme]
    assert missing == [], f"charts/longtask/README.md does not list: {missing}"


def test_runner_pods_get_the_pull_secrets_through_their_service_account() -> None:
    objects = render(sets=["imagePullSecrets[0].name=registry-credentials",
                           "watch.namespaces={team-a}"])

    runners = find(objects, "ServiceAccount", "lt-longtask-runner")
    assert [r["imagePullSecrets"] for r in runners] == [[{"name": "registry-credentials"}]] * 2


# --------------------------------------------------------------------------- disruption, network


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels; matchExpressions In/Exists) selects ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "Exists" and expr["key"] not in labels:
            return False
        assert expr["operator"] in ("In", "Exists"), expr
    return True


def pod_labels(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, str]:
    (obj,) = find(objects, kind, name)
    labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


def runner_pod_labels() -> dict[str, str]:
    """The labels of a runner pod as the operator makes it."""
    labels: dict[str, str] = sample_run_job()["spec"]["template"]["metadata"]["labels"]
    return labels


def test_a_drain_takes_one_operator_and_one_api_pod_at_a_time() -> None:
    objects = render()

    budgets = {b["metadata"]["name"]: b["spec"] for b in find(objects, "PodDisruptionBudget")}
    assert set(budgets) == {"lt-longtask-operator", "lt-longtask-api"}
    for name, spec in budgets.items():
        assert spec["maxUnavailable"] == 1 and "minAvailable" not in spec, spec
        assert selects(spec["selector"], pod_labels(objects, "Deployment", name)), name
    off = render(sets=["operator.podDisruptionBudget.enabled=false", "api.enabled=false"])
    assert find(off, "PodDisruptionBudget") == []


def test_postgresql_takes_connections_only_from_the_releases_pods_and_runners() -> None:
    objects = render(sets=["watch.namespaces={team-a}"])
    (policy,) = find(objects, "NetworkPolicy", "lt-longtask-postgresql")
    spec = policy["spec"]

    assert selects(spec["podSelector"], pod_labels(objects, "StatefulSet",
                                                   "lt-longtask-postgresql"))
    assert spec["policyTypes"] == ["Ingress"]
    [rule] = spec["ingress"]
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    peers = rule["from"]
    for deployment in ("lt-longtask-operator", "lt-longtask-api"):
        labels = pod_labels(objects, "Deployment", deployment)
        assert any("namespaceSelector" not in p and selects(p["podSelector"], labels)
                   for p in peers), deployment
    runner = [p for p in peers if "namespaceSelector" in p]
    assert len(runner) == 1 and selects(runner[0]["podSelector"], runner_pod_labels())
    assert selects(runner[0]["namespaceSelector"],
                   {"kubernetes.io/metadata.name": "team-a"})
    assert not selects(runner[0]["namespaceSelector"],
                       {"kubernetes.io/metadata.name": "someone-else"})
    test_pod = find(objects, "Pod")[0]["metadata"]["labels"]
    assert not any(selects(p["podSelector"], test_pod) for p in peers), (
        "the helm test pod talks to the API, not to the database")


def test_runner_pods_reach_only_the_database_and_dns_in_every_task_namespace() -> None:
    objects = render(sets=["watch.namespaces={team-a}"])
    policies = find(objects, "NetworkPolicy", "lt-longtask-runner")

    assert sorted(p["metadata"]["namespace"] for p in policies) == ["longtask", "team-a"]
    for policy in policies:
        spec = policy["spec"]
        assert selects(spec["podSelector"], runner_pod_labels())
        assert spec["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in spec
        database, dns = spec["egress"]
        assert database["ports"] == [{"port": 5432, "protocol": "TCP"}]
        [peer] = database["to"]
        assert selects(peer["podSelector"], pod_labels(objects, "StatefulSet",
                                                       "lt-longtask-postgresql"))
        assert peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "longtask"}}
        assert "to" not in dns and {p["port"] for p in dns["ports"]} == {53}


def test_an_existing_database_gets_a_runner_policy_only_when_its_address_is_given() -> None:
    existing = ["postgresql.enabled=false", "database.url=postgresql://db.example:5432/x"]

    assert find(render(sets=existing), "NetworkPolicy", "lt-longtask-runner") == []
    objects = render(sets=[*existing, "networkPolicy.databaseEgress[0].ipBlock.cidr=10.20.0.5/32",
                           "networkPolicy.databasePort=6432"])
    (policy,) = find(objects, "NetworkPolicy", "lt-longtask-runner")
    database = policy["spec"]["egress"][0]
    assert database == {"ports": [{"port": 6432, "protocol": "TCP"}],
                        "to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}]}
    assert find(objects, "NetworkPolicy", "lt-longtask-postgresql") == []


def test_the_api_takes_connections_on_its_port_from_whom_the_values_say() -> None:
    objects = render()
    (policy,) = find(objects, "NetworkPolicy", "lt-longtask-api")
    [rule] = policy["spec"]["ingress"]
    assert rule == {"ports": [{"port": 8080, "protocol": "TCP"}]}, "anyone, on the port only"

    limited = render(sets=["networkPolicy.apiFrom[0].podSelector.matchLabels.app=ingress"])
    (policy,) = find(limited, "NetworkPolicy", "lt-longtask-api")
    assert policy["spec"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app": "ingress"}}}]
    assert find(render(sets=["networkPolicy.enabled=false"]), "NetworkPolicy") == []


def test_the_admission_policy_trusts_the_api_service_account_and_the_annotation() -> None:
    objects = render()
    (policy,) = find(objects, "ValidatingAdmissionPolicy", "lt-longtask-organizations")
    (binding,) = find(objects, "ValidatingAdmissionPolicyBinding", "lt-longtask-organizations")

    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert variables["byApi"] == (
        'request.userInfo.username == "system:serviceaccount:longtask:lt-longtask-api"')
    assert "collect.atlan.com/organizations" in variables["listed"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["CREATE"] and rule["resources"] == ["longtasks"]
    assert binding["spec"]["policyName"] == "lt-longtask-organizations"
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert find(render(sets=["admissionPolicy.enabled=false"]),
                "ValidatingAdmissionPolicy") == []


def test_a_production_api_with_no_token_is_refused_at_render() -> None:
    out = helm(*template_args(sets=["api.tokens.generateAdmin=false"]), check=False)

    assert out.returncode != 0
    assert "a production API refuses to start with no token" in out.stderr
    assert helm(*template_args(sets=["api.tokens.generateAdmin=false",
                                     "api.environment=development"])).returncode == 0


def test_one_storage_quota_and_retention_reach_the_api_the_operator_and_its_runners(
        monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(sets=["storage.quotaBytes=5000", "storage.retentionSeconds=7200",
                           "storage.unusedFileRetentionSeconds=600",
                           "storage.retentionIntervalSeconds=30"])
    api_env = env_of(containers(find(objects, "Deployment", "lt-longtask-api")[0])[0])
    for name, value in {**api_env, **_operator_env(objects)}.items():
        if name.startswith(("LONGTASK_API_", "LONGTASK_OPERATOR_")) and isinstance(value, str):
            monkeypatch.setenv(name, value)
    # A secretKeyRef in the chart: the generated Secret's value, as the kubelet would set it.
    monkeypatch.setenv("LONGTASK_API_SESSION_SECRET", "s" * 48)
    monkeypatch.setenv("LONGTASK_DATABASE_URL", "postgresql://db/collect")

    api, operator = ApiSettings(), OperatorSettings()  # type: ignore[call-arg]

    assert (api.storage_quota_bytes, api.unused_file_retention_seconds) == (5000, 600)
    assert (operator.storage_quota_bytes, operator.storage_retention_seconds,
            operator.unused_file_retention_seconds,
            operator.retention_interval_seconds) == (5000, 7200, 600, 30)
