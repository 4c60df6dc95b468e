"""The real node: containerd and the kubelet run the runner image built from the checkout.

What the process kubelet cannot show: an image's own user and entrypoint, ``kubectl logs``
and ``exec`` through the kubelet's API, SIGTERM and the grace period delivered by the
container runtime, and a node that gives the host back as it found it when it stops.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster import hoststate, kube
from devcluster.kube import KubeCluster, shared_folder, wait_for
from devcluster.pytest_fixtures import pod_json

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

KUBECTL = "/usr/bin/kubectl"


@pytest.fixture(scope="module")
def real_cluster(request: pytest.FixtureRequest) -> Iterator[KubeCluster]:
    """The session's cluster when its node is the real one, else one started here."""
    if kube.node_kind() == "real":
        yield request.getfixturevalue("kube_cluster")
        return
    cluster = kube.start(node="real")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def core(real_cluster: KubeCluster) -> Iterator[Any]:
    """``CoreV1Api`` of the real cluster as the admin."""
    from kubernetes import client
    api = real_cluster.api_client()
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


@pytest.fixture
def ns(real_cluster: KubeCluster, core: Any) -> Iterator[str]:
    """A fresh namespace of the real cluster, with its ``default`` service account."""
    import secrets

    from kubernetes.client.exceptions import ApiException
    name = f"t-node-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name}})

    def has_default_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    wait_for(has_default_sa, timeout=30, what=f"service account default in {name}")
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def program_pod(cluster: KubeCluster, name: str, program: str, *, grace: int = 30,
                folder: Path | None = None) -> dict[str, Any]:
    """A pod running ``python3 -c program`` from the runner image (its user, 10001)."""
    container: dict[str, Any] = {"name": "main", "image": cluster.pod_image,
                                 "imagePullPolicy": "Never",
                                 "command": ["python3", "-c", program]}
    spec: dict[str, Any] = {"restartPolicy": "Never", "terminationGracePeriodSeconds": grace,
                            "containers": [container]}
    if folder is not None:
        volume, mount = shared_folder(folder)
        spec["volumes"] = [volume]
        container["volumeMounts"] = [mount]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def phase_of(core: Any, ns: str, name: str, *phases: str) -> dict[str, Any] | None:
    obj = pod_json(core, ns, name)
    return obj if obj and obj.get("status", {}).get("phase") in phases else None


def kubectl(cluster: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, *args], env={**os.environ, **cluster.env()},
                          capture_output=True, text=True, timeout=60)


def test_a_pod_runs_from_the_image_and_kubectl_logs_reads_its_output(
        real_cluster: KubeCluster, core: Any, ns: str) -> None:
    program = ("import json, os, sys; print(json.dumps({'uid': os.getuid(), "
               "'exe': sys.executable, 'cwd': os.getcwd()}))")
    core.create_namespaced_pod(ns, program_pod(real_cluster, "hello", program))

    obj = wait_for(lambda: phase_of(core, ns, "hello", "Succeeded", "Failed"), timeout=60,
                   what="the pod to end")
    logs = kubectl(real_cluster, "-n", ns, "logs", "hello")

    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    status = obj["status"]["containerStatuses"][0]
    assert status["containerID"].startswith("containerd://"), status
    assert status["imageID"], "the runtime reports the image it ran"
    assert obj["spec"]["hostNetwork"] is True, "the cluster's policy gives pods the host network"
    assert logs.returncode == 0, logs.stderr
    assert json.loads(logs.stdout) == {"uid": 10001, "exe": "/opt/longtask/bin/python3",
                                       "cwd": "/tmp"}, "the image's user, PATH and WORKDIR"
    assert real_cluster.pod_log(ns, "hello") == logs.stdout


def test_kubectl_exec_runs_a_command_in_the_running_container(
        real_cluster: KubeCluster, core: Any, ns: str) -> None:
    core.create_namespaced_pod(ns, program_pod(real_cluster, "sleeper",
                                               "import time; time.sleep(300)", grace=1))
    wait_for(lambda: phase_of(core, ns, "sleeper", "Running"), timeout=60,
             what="the pod to run")

    result = kubectl(real_cluster, "-n", ns, "exec", "sleeper", "--", "python3", "-c",
                     "import os; print(os.getpid(), open('/proc/1/cmdline').read())")

    assert result.returncode == 0, result.stderr
    pid, cmdline = result.stdout.split(" ", 1)
    assert int(pid) > 1 and "time.sleep(300)" in cmdline, (
        f"exec runs beside the container's own process (PID 1): {result.stdout!r}")


def test_a_container_exit_code_is_the_pods(real_cluster: KubeCluster, core: Any,
                                           ns: str) -> None:
    core.create_namespaced_pod(ns, program_pod(real_cluster, "fails",
                                               "import sys; sys.exit(3)"))

    obj = wait_for(lambda: phase_of(core, ns, "fails", "Succeeded", "Failed"), timeout=60,
                   what="the pod to end")

    terminated = obj["status"]["containerStatuses"][0]["state"]["terminated"]
    assert obj["status"]["phase"] == "Failed"
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error"), terminated


def test_deletion_sends_sigterm_then_kills_after_the_grace_period(
        real_cluster: KubeCluster, core: Any, ns: str, tmp_path: Path) -> None:
    program = ("import pathlib, signal, sys, time\n"
               f"out = pathlib.Path({str(tmp_path)!r})\n"
               "def on_term(signum, frame):\n"
               "    (out / 'sigterm').write_text(str(time.time()))\n"
               "signal.signal(signal.SIGTERM, on_term)\n"
               "(out / 'started').write_text('')\n"
               "while True:\n"
               "    time.sleep(0.05)\n")
    core.create_namespaced_pod(ns, program_pod(real_cluster, "stubborn", program, grace=2,
                                               folder=tmp_path))
    wait_for(lambda: (tmp_path / "started").exists(), timeout=60, what="the program to run")
    obj = pod_json(core, ns, "stubborn")
    assert obj is not None
    pid = real_cluster.container_pid(obj["status"]["containerStatuses"][0]["containerID"])

    deleted = time.time()
    core.delete_namespaced_pod("stubborn", ns)
    wait_for(lambda: (tmp_path / "sigterm").exists(), timeout=10,
             what="SIGTERM to reach the program")
    wait_for(lambda: pod_json(core, ns, "stubborn") is None, timeout=30,
             what="the pod to be gone")
    gone = time.time()

    sigterm_after = float((tmp_path / "sigterm").read_text()) - deleted
    assert sigterm_after < 5, f"SIGTERM came {sigterm_after:.1f} s after the deletion"
    assert gone - deleted >= 2, "the program ignored SIGTERM: it ran out its grace period"
    assert not Path(f"/proc/{pid}").exists(), f"process {pid} was killed after the grace"


def _node_processes(folder: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(folder) in cmdline:
                found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def nodes_share(snapshot: hoststate.Snapshot) -> dict[str, Any]:
    """What of the host a node changes, from a snapshot: sysctls, the KUBE-* chains, the
    fixed paths, the nodes' cgroups (other programs on the machine change the rest)."""
    return {
        "sysctls": snapshot.sysctls,
        "missing": snapshot.missing_paths,
        "chains": {tool: {table: [c for c in chains if c.startswith("KUBE-")]
                          for table, chains in tables.items()}
                   for tool, tables in snapshot.chains.items()},
        "cgroups": {h: [c for c in names if c.startswith(hoststate.CGROUP_PREFIX)]
                    for h, names in snapshot.cgroups.items()},
    }


def test_a_stopped_node_leaves_the_host_as_it_found_it(real_cluster: KubeCluster) -> None:
    before = nodes_share(hoststate.take())
    cluster = kube.start(node="real")
    folder = cluster.workdir
    node = cluster.node
    assert node is not None
    try:
        from kubernetes import client
        api = cluster.api_client()
        core = client.CoreV1Api(api)
        core.create_namespaced_pod("default", program_pod(
            cluster, "sleeper", "import time; time.sleep(300)", grace=1))
        wait_for(lambda: phase_of(core, "default", "sleeper", "Running"), timeout=60,
                 what="the second node's pod to run")
        api.close()
        assert hoststate.mounts_under(folder), "a running pod has mounts under the node"
    finally:
        cluster.stop()

    assert _node_processes(folder) == [], "no containerd, kubelet, shim or container left"
    assert hoststate.mounts_under(folder) == []
    assert not any((h / node.cgroup_root.lstrip("/")).exists()
                   for h in hoststate.cgroup_hierarchies()), f"cgroup {node.cgroup_root} left"
    assert str(folder / "node") not in hoststate.holders()
    assert nodes_share(hoststate.take()) == before, "sysctls, chains, paths, cgroups as before"
    assert not folder.exists()


def test_restore_undoes_what_a_kubelet_changes() -> None:
    snapshot = hoststate.take()
    chain = "KUBE-LONGTASK-TEST"
    subprocess.run(["iptables", "-w", "5", "-t", "mangle", "-N", chain], check=True)
    subprocess.run(["iptables", "-w", "5", "-t", "mangle", "-A", "OUTPUT", "-j", chain],
                   check=True)
    cgroup = next(h for h in hoststate.cgroup_hierarchies()) / (
        hoststate.CGROUP_PREFIX + "test") / "kubepods"
    cgroup.mkdir(parents=True)
    name = "kernel.keys.root_maxkeys"
    path = Path("/proc/sys/kernel/keys/root_maxkeys")
    path.write_text(str(int(snapshot.sysctls[name]) + 1))
    made = [p for p in snapshot.missing_paths if p.startswith("/var/lib/")][:1]
    for p in made:
        Path(p, "state").mkdir(parents=True)

    hoststate.restore(snapshot)

    assert nodes_share(hoststate.take()) == nodes_share(snapshot)
    rules = subprocess.run(["iptables", "-w", "5", "-t", "mangle", "-S"], capture_output=True,
                           text=True, check=True).stdout
    assert chain not in rules
    assert not cgroup.parent.exists()
    assert path.read_text().strip() == snapshot.sysctls[name]
    assert not any(os.path.lexists(p) for p in made)
