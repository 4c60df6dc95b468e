"""Adversarial cells of every field type at 1,000, 10,000 and 100,000 characters through
``POST /v1/tasks/validate`` of the API's own process: every dry run answers, having read
its file or stopped at its time budget, and ``/healthz`` answers all along."""

from __future__ import annotations

import pytest
from api_support import token_of
from longtask.api.settings import ApiSettings

from devcluster import abuse

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]
ACME_TOKEN = token_of("operator")  # an operator of acme

LENGTHS = (1_000, 10_000, 100_000)


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    """A budget of two seconds per dry run."""
    return api_settings.model_copy(update={"validate_budget_seconds": 2.0})


def test_hostile_cells_of_every_type_are_answered_and_healthz_meanwhile(
        api_process: abuse.ApiProcess, seeded: dict[str, int]) -> None:
    result = abuse.hostile_cells(api_process.url, ACME_TOKEN, lengths=LENGTHS,
                                 file_bytes=200_000)

    assert set(result.per_cell) == set(abuse.FIELD_TYPES)
    assert all(sorted(by_length) == list(LENGTHS) for by_length in result.per_cell.values())
    assert result.statuses == [200] * len(abuse.FIELD_TYPES) * len(LENGTHS), result.statuses
    assert result.stopped_by <= {"end", "seconds"}, result.stopped_by
    assert result.probes_during >= 1, "/healthz was probed while the dry runs ran"
    assert set(result.probes) == {200}, sorted(set(result.probes))
