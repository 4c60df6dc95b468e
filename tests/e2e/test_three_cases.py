"""The three cases of README.md end to end, through the REST API on the whole stack.

One stack per module: PostgreSQL, the local control plane with the CRD, the operator and
the API (``devcluster.stack``). Each case is the demo's own script (``demo/cases.py``),
which checks the database after every step (counts, the rows each task wrote, the export
against a direct SQL count) and that no runner pod is left after a pause or terminate;
a failed check raises, failing the test with what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.cases import Demo, Sizes
from demo.control import ApiControl
from devcluster import stack
from longtask.db import connect

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

ORG = "atlan-e2e"
SIZES = Sizes(baseline_rows=8_000, second_rows=3_000, submissions=60_000, teams=1_000,
              upload_rate=2_500, teams_rate=400)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Stack]:
    running = stack.start(Path(tmp_path_factory.mktemp("stack")), organizations=[ORG])
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def demo(live: stack.Stack) -> Iterator[Demo]:
    control = ApiControl(live.api_url, live.tokens)
    conn = connect(live.db_url, application_name="longtask-e2e")
    conn.autocommit = True
    try:
        yield Demo(control, conn, ORG, SIZES, live.runner_pods)
    finally:
        control.close()
        conn.close()


def test_baseline_upload_paused_resumed_then_swapped_file_rolled_back_and_fixed(demo: Demo):
    demo.baseline()
    total = demo.sql("SELECT count(DISTINCT external_id) FROM collect.baseline_records")
    assert total == SIZES.baseline_rows + SIZES.second_rows


def test_export_of_the_wrong_range_removed_and_the_right_one_downloaded(demo: Demo):
    demo.export()
    assert demo.sql("SELECT count(*) FROM longtask.export_parts ep JOIN longtask.tasks t "
                    "ON t.uid = ep.task_uid WHERE t.rollback_status = 'succeeded'") == 0


def test_team_creation_with_shifted_phones_rolled_back_then_fixed(demo: Demo):
    demo.teams()
    managers = demo.sql("SELECT count(*) FROM collect.team_memberships WHERE role = 'manager'")
    assert managers == demo.sql("SELECT count(*) FROM collect.teams"), "one manager a team"
