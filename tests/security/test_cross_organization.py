"""globex's token against everything of acme's, on every operation of the OpenAPI
document and on the concurrency keys: each refused as if missing (404) or forbidden
(403, 422 for keys), and no byte of acme's in any answer."""

from __future__ import annotations

import httpx
import pytest
from api_support import token_of

from devcluster import abuse

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]
GLOBEX_TOKEN = token_of("other")  # an operator of globex only


def test_globex_reaches_nothing_of_acme_on_any_operation_or_key(
        api_url: str, acme: httpx.Client, victim: abuse.Victim) -> None:
    before = [acme.get(f"/v1/tasks/{name}").json() for name in victim.tasks]

    result = abuse.cross_organization(api_url, GLOBEX_TOKEN, victim)

    assert result.uncovered == [], "operations of the OpenAPI document without a case"
    assert result.operations >= 20, result.operations
    assert result.failures == [], "\n".join(result.failures)
    assert result.attempts == result.refused > 100, (result.attempts, result.refused)
    assert result.leaked_bytes == 0
    after = [acme.get(f"/v1/tasks/{name}").json() for name in victim.tasks]
    assert [(t["state"], t.get("reason")) for t in after] == [
        (t["state"], t.get("reason")) for t in before], "acme's tasks untouched"
    for file_id in victim.files:
        assert acme.get(f"/v1/files/{file_id}").status_code == 200


def test_the_matrix_misses_no_operation_of_the_document(api_url: str,
                                                        victim: abuse.Victim) -> None:
    document = httpx.get(f"{api_url}/openapi.json", timeout=30).json()
    listed = {f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item
              if m in ("get", "post", "put", "patch", "delete")}

    assert listed <= set(abuse.attempts(victim)), sorted(listed - set(abuse.attempts(victim)))
