"""Another organization's client while 20 slow clients (trickling uploads, downloads that
read nothing) and 200 watch open/close cycles run against the API's own process: every
request answered, the watch streams never above their bound and all given back."""

from __future__ import annotations

import httpx
import pytest
from api_support import token_of
from longtask.api.settings import ApiSettings

from devcluster import abuse

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]
ACME_TOKEN = token_of("operator")  # an operator of acme
GLOBEX_TOKEN = token_of("other")  # an operator of globex only

MAX_WATCHES, PER_SUBJECT = 16, 4


@pytest.fixture
def export_rows() -> int:
    """An output of a few MB, more than the slow downloads' windows take."""
    return 20_000


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    """A small database pool (ten held connections would exhaust it), body bounds long
    enough for the trickles to last, watches ending within a second of their client."""
    return api_settings.model_copy(update={
        "db_pool_size": 3, "body_idle_timeout_seconds": 60, "body_timeout_seconds": 60,
        "body_min_bytes_per_second": 1, "max_watches": MAX_WATCHES,
        "max_watches_per_subject": PER_SUBJECT, "watch_heartbeat_seconds": 1})


def test_slow_clients_and_watch_cycles_leave_another_client_answered(
        api_process: abuse.ApiProcess, victim: abuse.Victim, globex: httpx.Client) -> None:
    own = globex.post("/v1/files", params={"organization": "globex"},
                      files={"file": ("g.csv", b"head_name\nAda\n", "text/csv")})
    assert own.status_code == 201, own.text
    task = globex.post("/v1/tasks", json={
        "type": "BaselineUpload", "organization": "globex", "params": {
            "form": "Households", "fileId": own.json()["id"], "keyColumn": "head_name"}})
    assert task.status_code == 201, task.text

    result = abuse.slow_load(api_process.url, victim=victim, acme_token=ACME_TOKEN,
                             other_token=GLOBEX_TOKEN, other_task=task.json()["name"],
                             slow=20, cycles=200, probes=200)

    assert len(result.idle) == 200 and len(result.loaded) >= 200
    assert set(result.probe_statuses) == {200}, sorted(set(result.probe_statuses))
    assert len(result.probe_statuses) == len(result.idle) + len(result.loaded)
    assert len(result.watch_statuses) == 200
    assert set(result.watch_statuses) == {200, 503}, sorted(set(result.watch_statuses))
    assert 0 < result.most_watches_seen <= PER_SUBJECT, "acme's cycles hold its share only"
    assert result.watches_after == 0, "every watch stream given back"
    with httpx.Client(base_url=api_process.url, timeout=30,
                      headers=abuse.bearer(GLOBEX_TOKEN)) as after:
        assert after.get(f"/v1/files/{own.json()['id']}").status_code == 200
