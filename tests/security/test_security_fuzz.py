"""A property-based fuzz (schemathesis, hypothesis) of every operation with acme's and
globex's tokens, with acme's things in place: no answer is a server error."""

from __future__ import annotations

import pytest
from api_support import token_of

from devcluster import abuse

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]
ACME_TOKEN = token_of("operator")  # an operator of acme
GLOBEX_TOKEN = token_of("other")  # an operator of globex only

EXAMPLES = 8  # per operation and token


def test_no_generated_request_of_either_organization_is_a_server_error(
        api_url: str, victim: abuse.Victim) -> None:
    result = abuse.fuzz(api_url, [ACME_TOKEN, GLOBEX_TOKEN], EXAMPLES)

    assert result.operations >= 20, result.operations
    assert result.requests >= result.operations * 2, result.requests
    assert result.server_errors == [], "\n".join(result.server_errors[:20])
