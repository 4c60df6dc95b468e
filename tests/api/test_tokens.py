"""Bearer tokens fail closed: a token file that goes away, or stops reading, revokes its
tokens at once, and a production API never starts with none."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
import yaml
from api_support import TOKENS, token_of
from longtask.api.app import create_app
from longtask.api.auth import TokenConfigError, hash_token
from longtask.api.settings import ApiSettings, Environment

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


def metric(api_url: str, name: str) -> float:
    text = httpx.get(f"{api_url}/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def tasks_status(api_url: str, role: str) -> int:
    return httpx.get(f"{api_url}/v1/tasks", timeout=10,
                     headers={"Authorization": f"Bearer {token_of(role)}"}).status_code


def test_a_deleted_token_file_revokes_its_tokens_until_it_is_back(
        api_url: str, token_file: Path, tmp_path: Path) -> None:
    assert tasks_status(api_url, "viewer") == 200
    kept = tmp_path / "kept.yaml"
    shutil.move(token_file, kept)

    assert tasks_status(api_url, "viewer") == 401
    assert tasks_status(api_url, "admin") == 401
    assert httpx.get(f"{api_url}/healthz", timeout=10).status_code == 200
    assert metric(api_url, "longtask_api_tokens") == 0
    assert metric(api_url, "longtask_api_token_file_failures") == 1
    assert tasks_status(api_url, "viewer") == 401
    assert metric(api_url, "longtask_api_token_file_failures") == 1, "one failure, counted once"

    shutil.move(kept, token_file)
    assert tasks_status(api_url, "viewer") == 200
    assert metric(api_url, "longtask_api_tokens") == len(TOKENS)


def test_an_unreadable_or_broken_token_file_revokes_its_tokens(
        api_url: str, token_file: Path) -> None:
    good = token_file.read_text()
    token_file.unlink()
    token_file.mkdir()  # reading it fails: IsADirectoryError
    assert tasks_status(api_url, "operator") == 401

    token_file.rmdir()
    token_file.write_text(good + "\n- {not: [an entry\n")
    assert tasks_status(api_url, "operator") == 401
    assert metric(api_url, "longtask_api_token_file_failures") == 2

    token_file.write_text(good)
    assert tasks_status(api_url, "operator") == 200


def test_a_rotated_file_takes_effect_without_a_restart(api_url: str, token_file: Path) -> None:
    viewer_only = [{"sha256": hash_token(token_of("viewer")), **TOKENS["viewer"]}]
    token_file.write_text(yaml.safe_dump({"tokens": viewer_only}))

    assert tasks_status(api_url, "viewer") == 200
    assert tasks_status(api_url, "operator") == 401
    assert metric(api_url, "longtask_api_tokens") == 1


@pytest.mark.parametrize("document", ["[]", "tokens: []", ""])
def test_a_production_api_refuses_to_start_with_no_token(
        api_settings: ApiSettings, tmp_path: Path, document: str) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text(document)

    with pytest.raises(TokenConfigError, match="holds no token, so nobody could call the API"):
        create_app(api_settings.model_copy(update={"tokens_file": empty}))

    development = api_settings.model_copy(update={"tokens_file": empty,
                                                  "environment": Environment.DEVELOPMENT})
    assert create_app(development) is not None
