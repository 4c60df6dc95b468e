"""The API process's resident memory under the largest form it accepts (32 parts, the
file at the upload limit), a form of 50,000 fields (refused) and concurrent dry runs of
a hostile file: its peak stays within a bound derived from its settings."""

from __future__ import annotations

import pytest
from api_support import token_of
from longtask.api.settings import ApiSettings
from longtask.api.uploads import MAX_FIELD_BYTES, MAX_PARTS

from devcluster import abuse

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]
ACME_TOKEN = token_of("operator")  # an operator of acme


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    """Dry runs of at most 4 MiB, two at a time."""
    return api_settings.model_copy(update={
        "validate_max_bytes": 4 << 20, "max_validations": 2, "max_validations_per_subject": 2})


def test_the_largest_form_and_dry_runs_keep_the_api_within_its_memory_bound(
        api_process: abuse.ApiProcess, api_settings: ApiSettings,
        seeded: dict[str, int]) -> None:
    result = abuse.memory(api_process, ACME_TOKEN,
                          upload_bytes=api_settings.max_upload_bytes - (1 << 20),
                          parts=MAX_PARTS, field_bytes=MAX_FIELD_BYTES, validations=2,
                          validate_file_bytes=8 << 20)

    assert result.form_status == 201
    assert result.many_fields_status == 400
    assert result.validate_statuses == [200, 200]
    bound = abuse.memory_bound(api_settings, MAX_PARTS, MAX_FIELD_BYTES)
    assert result.peak - result.before <= bound, (
        f"peak {result.peak >> 20} MiB from {result.before >> 20} MiB, "
        f"bound +{bound >> 20} MiB")
