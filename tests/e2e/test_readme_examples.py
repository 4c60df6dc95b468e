"""The READMEs' examples run as written against the dev stack with its example data.

Each ```sh block that follows an ``<!-- example: run by tests/e2e/test_readme_examples.py
-->`` line in README.md and api/README.md is run by bash (``-euo pipefail``: any failed
command fails the test) in a fresh folder, with exactly the variables that
``python -m devcluster.stack`` tells a person to export.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devcluster import examples, stack
from devcluster.kube import REPO
from longtask.constants import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

MARKER = "<!-- example: run by tests/e2e/test_readme_examples.py -->"
BLOCK = re.compile(re.escape(MARKER) + r"\n```sh\n(?P<script>.*?)\n```", re.DOTALL)
READMES = ("README.md", "api/README.md")
SCRIPT_TIMEOUT = 240  # seconds for one block, the export it waits for included


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Stack]:
    running = stack.start(Path(tmp_path_factory.mktemp("stack")),
                          organizations=[examples.ORGANIZATION], with_examples=True)
    try:
        yield running
    finally:
        running.stop()


def blocks(readme: str) -> list[str]:
    found = [m["script"] for m in BLOCK.finditer((REPO / readme).read_text())]
    assert found, f"{readme} has no block marked {MARKER!r}"
    return found


def run_block(script: str, live: stack.Stack, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(live.example_env())
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, cwd=workdir,
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, check=False)


@pytest.mark.parametrize("readme", READMES)
def test_the_readme_examples_run_as_written(readme: str, live: stack.Stack,
                                            tmp_path: Path) -> None:
    for script in blocks(readme):
        done = run_block(script, live, tmp_path)
        assert done.returncode == 0, (
            f"{readme}: the example exited {done.returncode}\n--- stdout\n{done.stdout}"
            f"\n--- stderr\n{done.stderr}")

    tasks = client.CustomObjectsApi(live.cluster.api_client()).list_namespaced_custom_object(
        GROUP, VERSION, live.namespace, PLURAL)["items"]
    states = sorted((t["spec"]["type"], t["spec"]["state"]) for t in tasks)
    if readme == "README.md":
        assert states == [("BaselineUpload", "Terminated"), ("Export", "Running")], states
    else:
        # The digest the API gave is the one of the bytes it sent.
        header = re.search(r"(?i)longtask-output-sha256: (\w+)", done.stdout)
        assert header, done.stdout
        assert f"{header.group(1)}  export.csv" in done.stdout, done.stdout
        assert ("BaselineUpload", "Terminated") in states, states
