"""The ``longtask`` command, run as a subprocess against the whole stack: every command,
its exit codes, its ``--json`` output parsed, and the API's problems printed readably."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CASES_ORG, LONGTASK, ORG, Run

from devcluster import stack
from longtask.db import connect

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

HEADS_CSV = ("household_id,head_name,members,phone\n"
             "C-1,Awa Diop,4,\n"
             "C-2,Moussa Fall,many,\n"
             "C-3,Fatou Ndiaye,2,\n")


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> str:
    """The run's stdout, after checking its exit code and that no traceback came."""
    assert done.returncode == code, (f"exit {done.returncode}, expected {code}\n--- stdout\n"
                                     f"{done.stdout}\n--- stderr\n{done.stderr}")
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def as_json(done: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    return json.loads(ok(done, code))


def on_a_terminal(live: stack.Stack, env: dict[str, str], *args: str,
                  timeout: float = 60) -> str:
    """Run the command with its stdout on a pseudo-terminal; what it wrote there."""
    master, slave = pty.openpty()
    full = {**env, "LONGTASK_API_URL": live.api_url, "LONGTASK_TOKEN": live.tokens[ORG]}
    proc = subprocess.Popen([str(LONGTASK), *args], env=full, stdout=slave,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(master)
    return b"".join(chunks).decode()


def upload(longtask_cli: Run, path: Path) -> str:
    return str(as_json(longtask_cli("upload", str(path), "--org", ORG, "--json"))["id"])


# ------------------------------------------------------------------------------ login


def test_login_writes_a_0600_config_file_and_the_environment_wins_over_it(
        longtask_cli: Run, live: stack.Stack, cli_env: dict[str, str]) -> None:
    token = live.tokens[ORG]
    done = longtask_cli("login", "--api-url", live.api_url, "--token-stdin", org=None,
                        stdin=token + "\n")
    out = ok(done)
    assert token not in out + done.stderr, "the token is never echoed"

    path = Path(cli_env["XDG_CONFIG_HOME"]) / "longtask" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert token in path.read_text()
    listed = as_json(longtask_cli("list", "--json", org=None))
    assert "items" in listed

    refused = longtask_cli("list", org=None, env={"LONGTASK_TOKEN": "not-a-token-a1b2c3"})
    ok(refused, 1)
    assert refused.stderr.startswith("error: ") and "HTTP 401" in refused.stderr, refused.stderr


def test_logout_removes_the_stored_token(
        longtask_cli: Run, live: stack.Stack, cli_env: dict[str, str]) -> None:
    ok(longtask_cli("login", "--api-url", live.api_url, "--token-stdin", org=None,
                    stdin=live.tokens[ORG] + "\n"))
    path = Path(cli_env["XDG_CONFIG_HOME"]) / "longtask" / "config.toml"
    assert path.exists()

    assert f"removed {path}" in ok(longtask_cli("logout", org=None))
    assert not path.exists()
    ok(longtask_cli("list", org=None), 2)  # no token any more
    assert as_json(longtask_cli("logout", "--json", org=None))["removed"] is False


def test_login_with_a_token_the_api_refuses_writes_nothing(
        longtask_cli: Run, live: stack.Stack, cli_env: dict[str, str]) -> None:
    done = longtask_cli("login", "--api-url", live.api_url, "--token-stdin", org=None,
                        stdin="not-a-token-a1b2c3\n")

    ok(done, 1)
    assert not (Path(cli_env["XDG_CONFIG_HOME"]) / "longtask" / "config.toml").exists()
    missing = longtask_cli("list", org=None)
    ok(missing, 2)
    assert "longtask login" in missing.stderr, missing.stderr


def test_a_config_file_others_may_read_is_refused(
        longtask_cli: Run, live: stack.Stack, cli_env: dict[str, str]) -> None:
    ok(longtask_cli("login", "--api-url", live.api_url, "--token-stdin", org=None,
                    stdin=live.tokens[ORG] + "\n"))
    path = Path(cli_env["XDG_CONFIG_HOME"]) / "longtask" / "config.toml"
    path.chmod(0o644)

    done = longtask_cli("list", org=None)

    ok(done, 2)
    assert "chmod 600" in done.stderr and str(path) in done.stderr, done.stderr


# -------------------------------------------------------------------- a baseline upload


def test_upload_validate_start_watch_wait_pause_resume_terminate(
        longtask_cli: Run, example_files: Path, live: stack.Stack,
        cli_env: dict[str, str]) -> None:
    file_id = upload(longtask_cli, example_files / "villages.csv")
    task = ["--org", ORG, "--type", "BaselineUpload", "-p", "form=villages",
            "-p", f"fileId={file_id}"]
    report = as_json(longtask_cli("validate", *task, "--json"))
    assert report["valid"] is True and report["rowsTotal"] == 2000, report
    assert "valid: yes" in ok(longtask_cli("validate", *task))

    started = as_json(longtask_cli("start", *task, "--rate-limit", "40", "--json"))
    name = started["name"]
    assert started["organization"] == ORG and started["params"]["fileId"] == file_id

    running = as_json(longtask_cli("wait", name, "--for", "Running", "--timeout", "90",
                                   "--json"))
    assert running["phase"] == "Running"
    timed_out = longtask_cli("wait", name, "--for", "Succeeded", "--timeout", "2")
    assert "still Running after 2 s" in ok(timed_out, 4)
    watched = ok(longtask_cli("watch", name, "--timeout", "3"), 4)
    lines = watched.splitlines()
    assert lines and all(line.startswith(f"{name} Running") for line in lines), watched
    assert "\r" not in watched and "rows" in lines[-1], "plain lines off a terminal"
    drawn = on_a_terminal(live, cli_env, "watch", name, "--timeout", "4")
    assert "\r\x1b[K" in drawn and f"{name} [" in drawn, drawn
    bar = drawn.rsplit("\r\x1b[K", 1)[-1]
    assert "% " in bar and "rows/s" in bar and "ETA " in bar, bar

    ok(longtask_cli("pause", name, "--reason", "checking the phones"))
    paused = as_json(longtask_cli("wait", name, "--for", "Paused", "--timeout", "90", "--json"))
    assert paused["reason"] == "checking the phones" and paused["requestedBy"], paused
    assert "checking the phones" in ok(longtask_cli("history", name))

    ok(longtask_cli("resume", name, "--reason", "the phones are right"))
    ok(longtask_cli("wait", name, "--for", "Running", "--timeout", "90"))
    refused = longtask_cli("delete", name, "--reason", "tidy up")
    ok(refused, 1)
    assert "HTTP 409" in refused.stderr and "keepWrites" in refused.stderr, refused.stderr
    ok(longtask_cli("terminate", name, "--reason", "columns swapped", "--rollback"))
    ended = longtask_cli("wait", name, "--for", "Succeeded", "--timeout", "120", "--json")
    final = as_json(ended, 3)
    assert final["phase"] == "RolledBack" and final["reason"] == "columns swapped", final
    got = ok(longtask_cli("get", name))
    assert "RolledBack" in got and "columns swapped" in got, got
    listed = as_json(longtask_cli("list", "--phase", "RolledBack", "--all", "--json"))
    assert name in [t["name"] for t in listed["items"]]
    events = [json.loads(line) for line in ok(longtask_cli("watch", name, "--json"))
              .splitlines()]
    assert [e["event"] for e in events] == ["task", "end"], events
    assert events[0]["data"]["phase"] == events[1]["data"]["phase"] == "RolledBack"

    left = as_json(longtask_cli("conflicts", name, "--json"))
    assert (left["total"], left["items"], left["next"]) == (0, [], None), left
    assert "0 rows left by the rollback" in ok(longtask_cli("conflicts", name))
    deleted = ok(longtask_cli("delete", name, "--reason", "rolled back, done"))
    assert deleted.startswith(f"{name}: delete"), deleted
    deadline = time.monotonic() + 30  # the operator's finalizer lets it go
    while (got := longtask_cli("get", name)).returncode == 0:
        assert time.monotonic() < deadline, got.stdout
        time.sleep(0.5)
    assert got.returncode == 1 and "HTTP 404" in got.stderr, got.stderr


def test_start_from_a_yaml_file_and_row_errors_listed(longtask_cli: Run,
                                                      tmp_path: Path) -> None:
    data = tmp_path / "heads.csv"
    data.write_text(HEADS_CSV)
    file_id = upload(longtask_cli, data)
    request = tmp_path / "task.yaml"
    request.write_text(f"type: BaselineUpload\norganization: {ORG}\nparams:\n"
                       f"  form: Households\n  fileId: {file_id}\n"
                       f"  keyColumn: household_id\n")

    name = as_json(longtask_cli("start", "-f", str(request), "--json"))["name"]
    ok(longtask_cli("wait", name, "--for", "Succeeded", "--timeout", "120"))

    listed = as_json(longtask_cli("--json", "errors", name))  # before the command, too
    assert listed["total"] == 1 and [e["line"] for e in listed["items"]] == [3], listed
    assert "line 3, column members" in ok(longtask_cli("errors", name))


# ----------------------------------------------------------------------------- output


def test_an_export_is_downloaded_with_its_checksum_checked_and_a_damaged_one_refused(
        longtask_cli: Run, live: stack.Stack, tmp_path: Path, corrupting_proxy: str) -> None:
    request = tmp_path / "export.yaml"
    # Dates unquoted, as people write them: they stay the strings the API reads.
    request.write_text(f"type: Export\norganization: {ORG}\n"
                       "params: {form: household-survey, from: 2017-08-01, to: 2017-08-31}\n")
    name = as_json(longtask_cli("start", "-f", str(request), "--json"))["name"]
    ok(longtask_cli("wait", name, "--for", "Succeeded", "--timeout", "120"))

    target = tmp_path / "export.csv"
    facts = as_json(longtask_cli("output", name, "-o", str(target), "--json"))
    data = target.read_bytes()
    assert facts["sha256"] == hashlib.sha256(data).hexdigest() and facts["bytes"] == len(data)
    assert facts["rows"] == 300 == data.count(b"\n") - 1 and facts["complete"] is True

    # One bit flipped on the way, length and headers kept: the SHA-256 differs.
    damaged = tmp_path / "damaged.csv"
    done = longtask_cli("output", name, "-o", str(damaged), "--api-url", corrupting_proxy)
    ok(done, 1)
    assert "has SHA-256" in done.stderr and "nothing written" in done.stderr, done.stderr
    assert not damaged.exists()

    # A part changed underneath (same length): the API ends the stream early.
    uid = as_json(longtask_cli("get", name, "--json"))["uid"]
    conn = connect(live.db_url, application_name="longtask-cli-tests")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE longtask.export_parts SET data = 'X' || substr(data, 2) "
                        "WHERE task_uid = %s AND part = (SELECT min(part) FROM "
                        "longtask.export_parts WHERE task_uid = %s)", (uid, uid))
            assert cur.rowcount == 1
    finally:
        conn.close()
    short = tmp_path / "short.csv"
    done = longtask_cli("output", name, "-o", str(short))
    ok(done, 1)
    assert done.stderr.startswith("error: the download of") and "nothing written" in \
        done.stderr, done.stderr
    assert not short.exists() and [p.name for p in tmp_path.iterdir()
                                   if p.name.startswith((".short", ".damaged"))] == []


# --------------------------------------------------------------------------- problems


def test_a_wrong_organization_is_the_apis_problem_printed_without_a_traceback(
        longtask_cli: Run, example_files: Path) -> None:
    done = longtask_cli("upload", str(example_files / "households.csv"), "--org", "globex")
    ok(done, 1)
    assert done.stderr.startswith("error: ") and "HTTP 403" in done.stderr, done.stderr

    as_problem = longtask_cli("upload", str(example_files / "households.csv"),
                              "--org", "globex", "--json")
    ok(as_problem, 1)
    problem = json.loads(as_problem.stderr)
    assert problem["status"] == 403 and problem["title"], problem


def test_a_missing_column_is_answered_with_its_pointer(longtask_cli: Run,
                                                       tmp_path: Path) -> None:
    data = tmp_path / "no-heads.csv"
    data.write_text("household_id,members\nN-1,3\n")
    file_id = upload(longtask_cli, data)
    task = ["--org", ORG, "--type", "BaselineUpload", "-p", "form=Households",
            "-p", f"fileId={file_id}", "-p", "keyColumn=household_id"]

    report = as_json(longtask_cli("validate", *task, "--json"), 3)
    assert report["valid"] is False and any("head_name" in str(e) for e in report["errors"])
    refused = longtask_cli("start", *task)
    ok(refused, 1)
    first, *errors = refused.stderr.splitlines()
    assert first.startswith("error: ") and "HTTP 422" in first, refused.stderr
    assert any(line.startswith("  #/") and "head_name" in line for line in errors), errors


def test_bad_input_to_the_command_itself_exits_2_saying_where(longtask_cli: Run,
                                                              tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("type: Export\nparams: {form: [x\n")
    done = longtask_cli("start", "-f", str(broken))
    ok(done, 2)
    assert f"{broken}:" in done.stderr and "not valid YAML" in done.stderr, done.stderr

    unknown = longtask_cli("wait", "whatever", "--for", "Finished", "--timeout", "5")
    ok(unknown, 1)
    assert "HTTP 422" in unknown.stderr and "phase" in unknown.stderr, unknown.stderr
    assert longtask_cli("wait", "whatever").returncode == 2  # click: --for missing

    unreachable = longtask_cli("list", "--api-url", "http://127.0.0.1:9")
    ok(unreachable, 1)
    assert unreachable.stderr.startswith("error: GET http://127.0.0.1:9/v1/tasks"), \
        unreachable.stderr


# ------------------------------------------------------------------- one token's share


def _paused_teams_task(longtask_cli: Run, example_files: Path, org: str) -> str:
    file_id = as_json(longtask_cli("upload", str(example_files / "teams.csv"), "--org", org,
                                   "--json", org=org))["id"]
    name = as_json(longtask_cli("start", "--type", "BulkTeamCreate", "--org", org,
                                "-p", f"fileId={file_id}", "--paused", "--json",
                                org=org))["name"]
    ok(longtask_cli("wait", name, "--for", "Paused", "--timeout", "60", org=org))
    return str(name)


def test_a_token_whose_watches_are_all_taken_waits_and_other_tenants_do_not(
        longtask_cli: Run, live: stack.Stack, cli_env: dict[str, str],
        example_files: Path) -> None:
    ours = _paused_teams_task(longtask_cli, example_files, ORG)
    theirs = _paused_teams_task(longtask_cli, example_files, CASES_ORG)
    env = {**cli_env, "LONGTASK_API_URL": live.api_url, "LONGTASK_TOKEN": live.tokens[ORG]}
    # The API's share of one token: LONGTASK_API_MAX_WATCHES_PER_SUBJECT, 4 by default.
    watchers = [subprocess.Popen([str(LONGTASK), "watch", ours, "--timeout", "90"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                for _ in range(4)]
    try:
        for watcher in watchers:
            assert watcher.stdout is not None
            ready, _, _ = select.select([watcher.stdout], [], [], 60)
            assert ready and watcher.stdout.readline().startswith(f"{ours} Paused")

        # No slot for this token: wait retries, and times out (4) rather than fails (1).
        ok(longtask_cli("wait", ours, "--for", "Paused", "--timeout", "6"), 4)
        # Another organization's token has slots of its own.
        ok(longtask_cli("wait", theirs, "--for", "Paused", "--timeout", "30", org=CASES_ORG))
    finally:
        for watcher in watchers:
            watcher.terminate()
            watcher.wait(timeout=10)
    # Once the watches really ended (the API frees a slot within a heartbeat), it gets one.
    ok(longtask_cli("wait", ours, "--for", "Paused", "--timeout", "60"))
    for name, org in ((ours, ORG), (theirs, CASES_ORG)):
        ok(longtask_cli("terminate", name, "--keep", "--reason", "test done", org=org))
        ok(longtask_cli("wait", name, "--for", "Terminated", "--timeout", "60", org=org))
