"""A Job driven through suspend, resume and completion on the local control plane.

The pod runs a small Python program that records its start and its SIGTERM in files, and
finishes when the test creates a ``finish`` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devcluster.kube import shared_folder, wait_for
from devcluster.pytest_fixtures import job_condition, job_pods

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

PROGRAM = """
import os, pathlib, signal, sys, time
out = pathlib.Path(os.environ["OUT"])
name = os.environ["POD_NAME"]
def on_sigterm(signum, frame):
    (out / f"sigterm-{name}").write_text(os.environ["POD_UID"])
    sys.exit(143)
signal.signal(signal.SIGTERM, on_sigterm)
(out / f"started-{name}").write_text(os.environ["POD_UID"])
deadline = time.monotonic() + 150
while not (out / "finish").exists():
    if time.monotonic() > deadline:
        sys.exit(2)
    time.sleep(0.05)
"""


def make_job(name: str, out: Path, image: str) -> dict[str, Any]:
    volume, mount = shared_folder(out)
    script = out / "program.py"
    script.write_text(PROGRAM)
    env: list[dict[str, Any]] = [{"name": "OUT", "value": str(out)}]
    for var, path in (("POD_NAME", "metadata.name"), ("POD_UID", "metadata.uid")):
        env.append({"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}})
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 2, "template": {"spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 20,
            "volumes": [volume],
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                            "command": ["python3", str(script)], "env": env,
                            "volumeMounts": [mount]}]}}},
    }


def started_pods(out: Path) -> set[str]:
    return {p.name.removeprefix("started-") for p in out.glob("started-*")}


def start_and_suspend(batch_v1: Any, core_v1: Any, ns: str, out: Path, image: str) -> str:
    """Create the Job, wait for its pod's program to run, suspend it; the first pod's name."""
    batch_v1.create_namespaced_job(ns, make_job("work", out, image))
    first = wait_for(lambda: next(iter(started_pods(out)), None), timeout=30,
                     what="the Job's pod program to start")
    batch_v1.patch_namespaced_job("work", ns, {"spec": {"suspend": True}})
    return first


def test_suspending_a_job_stops_its_pod_with_sigterm_and_marks_it_suspended(
        batch_v1: Any, core_v1: Any, kube_namespace: str, tmp_path: Path,
        pod_image: str) -> None:
    first = start_and_suspend(batch_v1, core_v1, kube_namespace, tmp_path, pod_image)

    wait_for(lambda: (tmp_path / f"sigterm-{first}").exists(), timeout=30,
             what=f"pod {first} to receive SIGTERM and write its marker")
    wait_for(lambda: job_pods(core_v1, kube_namespace, "work") == [], timeout=30,
             what="the suspended Job's pods to be deleted")
    suspended = wait_for(lambda: job_condition(batch_v1, kube_namespace, "work", "Suspended"),
                         timeout=30, what="the Suspended condition")
    assert suspended["status"] == "True", f"expected Suspended=True, got {suspended}"


def test_a_resumed_job_runs_a_new_pod_to_completion(
        batch_v1: Any, core_v1: Any, kube_namespace: str, tmp_path: Path,
        pod_image: str) -> None:
    first = start_and_suspend(batch_v1, core_v1, kube_namespace, tmp_path, pod_image)
    wait_for(lambda: job_pods(core_v1, kube_namespace, "work") == [], timeout=30,
             what="the suspended Job's pods to be deleted")

    batch_v1.patch_namespaced_job("work", kube_namespace, {"spec": {"suspend": False}})
    second = wait_for(lambda: next(iter(started_pods(tmp_path) - {first}), None), timeout=30,
                      what="a new pod to start after resume")
    (tmp_path / "finish").write_text("")
    complete = wait_for(lambda: job_condition(batch_v1, kube_namespace, "work", "Complete"),
                        timeout=60, what="the Job to complete")

    assert complete["status"] == "True", f"expected Complete=True, got {complete}"
    job = batch_v1.read_namespaced_job("work", kube_namespace)
    assert job.status.succeeded == 1, f"expected 1 succeeded pod, got {job.status.succeeded}"
    assert second != first, "the resumed Job should have run a new pod"
