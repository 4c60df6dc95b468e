"""An OpenAPI-driven fuzz run (schemathesis) over every operation: no 5xx, answers fit the
schema the API publishes (status codes, content types, bodies, headers), and requests that
break the schema are refused.

One check is left out: "a schema-valid request is accepted". The API checks more than its
schema says (``params`` per task type, that the organization, form and file exist), and
answers such requests 422 by design.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from api_support import create_baseline, token_of
from hypothesis import HealthCheck, given, settings
from longtask.api.settings import ApiSettings
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

EXAMPLES = 15  # per operation: enough to reach every branch of the validators, quickly


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    """A watch ends within two seconds, whatever ``timeout`` the fuzzer asks for."""
    return api_settings.model_copy(update={"watch_max_seconds": 2})


def test_every_operation_answers_within_its_schema(api_url: str, operator: Any) -> None:
    create_baseline(operator, name="fuzz-target")  # a task to find among random names
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    headers = {"Authorization": f"Bearer {token_of('admin')}"}
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            case.call_and_validate(base_url=api_url, headers=headers, timeout=30,
                                   excluded_checks=[positive_data_acceptance])

        try:
            fuzz()
        except BaseExceptionGroup as group:  # schemathesis' FailureGroup, one per operation
            failures[operation.label] = str(group)[:3000]
    assert operations >= 15, f"only {operations} operations in the schema"
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
