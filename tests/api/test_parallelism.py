"""``parallelism`` above 1 is refused at creation, by the API and by the CRD alike, with a
message saying that no task type partitions its work yet: a field that did nothing (the
runner got it and read nothing) is refused rather than ignored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from api_support import HOUSEHOLDS_CSV, baseline_request, create_baseline, problem, upload
from kubernetes.client.exceptions import ApiException

from longtask import tasktypes
from longtask.constants import API_VERSION, GROUP, KIND, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


@pytest.mark.parametrize("type_name", sorted(tasktypes.REGISTRY))
def test_no_registered_type_takes_a_parallelism_above_one(type_name: str) -> None:
    problem_text = tasktypes.parallelism_problem(type_name, 2)

    assert problem_text is not None and "cannot partition" in problem_text, problem_text
    assert tasktypes.parallelism_problem(type_name, 1) is None


def test_the_api_refuses_parallelism_above_one_saying_why(operator: httpx.Client) -> None:
    file_id = upload(operator, HOUSEHOLDS_CSV).json()["id"]

    body = problem(operator.post("/v1/tasks", json=baseline_request(file_id, parallelism=4)),
                   422)

    error = body["errors"][0]
    assert error["pointer"] == "#/parallelism", body
    assert "BaselineUpload cannot partition its work yet" in error["detail"], body


def test_parallelism_one_is_still_taken(operator: httpx.Client) -> None:
    assert create_baseline(operator, parallelism=1)["parallelism"] == 1


def test_the_crd_refuses_parallelism_above_one_for_kubectl_and_gitops(
        api_namespace: str, custom_objects: Any) -> None:
    body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "parallel"},
            "spec": {"type": "Export", "organization": "acme", "params": {},
                     "state": "Paused", "parallelism": 4}}

    with pytest.raises(ApiException) as caught:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, api_namespace, PLURAL,
                                                       body, dry_run="All")

    assert caught.value.status == 422, caught.value.body
    message = json.loads(caught.value.body)["message"]
    assert "spec.parallelism" in message and "can partition its work yet" in message, message
