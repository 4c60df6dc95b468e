"""The ``longtask`` commands (click). Each reads what it needs from the API and prints its
answer: for people by default, as the API's JSON with ``--json``. Exit codes: cli/README.md.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
from longtask.cli import config, download, render, taskfile
from longtask.cli.client import Api, Event
from longtask.cli.errors import (
    OK,
    OTHER_OUTCOME,
    TIMED_OUT,
    CliError,
    ProblemAnswered,
    Unreachable,
    UsageError,
)

F = TypeVar("F", bound=Callable[..., Any])
RETRY_WATCH_SECONDS = 5.0
"""Wait before retrying a watch the API refused for want of slots (503), at most."""


def _version() -> str:
    try:
        return metadata.version("longtask")
    except metadata.PackageNotFoundError:
        return "unknown"


class Context:
    """What every command shares: the options of the group, and the API client."""

    def __init__(self, api_url: str | None, as_json: bool) -> None:
        self.api_url = api_url
        self.as_json = as_json

    def api(self) -> Api:
        """A client for the configured API (:func:`config.resolve`)."""
        credentials = config.resolve(self.api_url)
        return Api(credentials.url, credentials.token, f"longtask-cli/{_version()}")

    def emit(self, data: Any, lines: list[str]) -> None:
        """Print ``data`` as JSON with ``--json``, else ``lines``."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            for line in lines:
                click.echo(line)


def command(group: click.Group, name: str | None = None, **attrs: Any) -> Callable[[F], F]:
    """A subcommand with ``--json`` and ``--api-url`` (also taken before the command name),
    whose :class:`CliError` is printed from its problem details and ends the command with
    its exit code, never with a traceback."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def run(as_json: bool, api_url: str | None, **kwargs: Any) -> None:
            parent = click.get_current_context().find_object(Context) or Context(None, False)
            ctx = Context(api_url or parent.api_url, as_json or parent.as_json)
            try:
                code = func(ctx, **kwargs)
            except CliError as exc:
                report(exc, ctx.as_json)
                sys.exit(exc.exit_code)
            sys.exit(code or OK)

        run = click.option("--api-url", metavar="URL", default=None,
                           help="The API's base URL (else $LONGTASK_API_URL, else the "
                                "config file).")(run)
        run = click.option("--json", "as_json", is_flag=True,
                           help="Print the API's JSON (errors as problem details on "
                                "stderr).")(run)
        group.command(name, **attrs)(run)
        return func

    return wrap


def report(exc: CliError, as_json: bool) -> None:
    """Print a failure to stderr: its problem details as JSON, or ``error: ...`` lines."""
    if as_json:
        click.echo(json.dumps(exc.problem(), indent=2, ensure_ascii=False), err=True)
    else:
        for line in render.problem_lines(exc.problem()):
            click.echo(line, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--api-url", metavar="URL", default=None,
              help="The API's base URL (else $LONGTASK_API_URL, else the config file).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.version_option(_version(), prog_name="longtask")
@click.pass_context
def cli(ctx: click.Context, api_url: str | None, as_json: bool) -> None:
    """Start, watch, pause, resume and terminate LongTasks through the REST API.

    Exit codes: 0 done (wait: the phase reached; validate: valid), 1 error (the API's
    problem, unreachable, a download that does not check out), 2 usage, 3 wait: another
    final phase (validate: invalid), 4 wait: timed out.
    """
    ctx.obj = Context(api_url, as_json)


def main() -> None:
    """The ``longtask`` script."""
    cli(prog_name="longtask")


# ------------------------------------------------------------------------------ login


@command(cli)
@click.option("--token-stdin", is_flag=True,
              help="Read the token from standard input (else it is asked for, unechoed).")
def login(ctx: Context, token_stdin: bool) -> int:
    """Store the API URL and a token in the config file (mode 0600), once the API took it."""
    url = ctx.api_url or os.environ.get(config.ENV_URL)
    if not url:
        url = click.prompt("API URL")
    token = (sys.stdin.readline().strip() if token_stdin
             else click.prompt("Token", hide_input=True).strip())
    if not token:
        raise UsageError("no token given")
    url = url.rstrip("/")
    with Api(url, token, f"longtask-cli/{_version()}") as api:
        api.request("GET", "/v1/tasks", params={"limit": 1})  # 401 for a token it refuses
    path = config.config_path()
    config.write_file(path, url, token)
    ctx.emit({"apiUrl": url, "configFile": str(path)},
             [f"logged in to {url}; wrote {path} (mode 0600)"])
    return OK


@command(cli)
def logout(ctx: Context) -> int:
    """Remove the config file's token (the file goes; the environment is not touched)."""
    path = config.config_path()
    removed = config.remove_file(path)
    ctx.emit({"configFile": str(path), "removed": removed},
             [f"removed {path}" if removed else f"no {path}: nothing to remove"])
    return OK


# ------------------------------------------------------------------------------ files


@command(cli)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", "--organization", "organization", required=True,
              help="The organization the file belongs to.")
@click.option("--encoding", default=None,
              help="The file's encoding, when the API's detection is not sure (cp1252).")
def upload(ctx: Context, file: Path, organization: str, encoding: str | None) -> int:
    """Upload a CSV FILE to the file store; prints its id and facts."""
    params = {"organization": organization, **({"encoding": encoding} if encoding else {})}
    with ctx.api() as api, file.open("rb") as data:
        # httpx streams the part from the open file, a chunk at a time.
        facts = api.json("POST", "/v1/files", params=params,
                         files={"file": (file.name, data, "text/csv")},
                         timeout=httpx.Timeout(60.0, read=600.0, write=600.0))
    ctx.emit(facts, [
        f"{facts['id']}",
        f"  {facts.get('filename')}: {facts.get('sizeBytes'):,} bytes, sha256 "
        f"{facts.get('sha256')}",
        f"  encoding {facts.get('encoding')} ({facts.get('encodingSource')}), about "
        f"{facts.get('rowCountEstimate')} rows, header {facts.get('header')}",
        *[f"  warning: {w}" for w in facts.get("warnings") or []]])
    return OK


# ------------------------------------------------------------------------------ tasks


def task_options(func: F) -> F:
    """The options of a task request (``start``, ``validate``), on top of ``-f FILE``."""
    for decorator in reversed([
        click.option("-f", "--file", "task_file", type=click.Path(dir_okay=False,
                     path_type=Path), help="The request as YAML or JSON (type, "
                     "organization, params, ...); the options below replace its keys."),
        click.option("--type", "task_type", help="BaselineUpload, Export, BulkTeamCreate."),
        click.option("--org", "--organization", "organization", help="The organization."),
        click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
                     help="A parameter (repeat); VALUE read as JSON when it is JSON."),
        click.option("--name", help="The task's name (else the API makes one)."),
        click.option("--paused", is_flag=True, default=None,
                     help="Create it paused (state Paused)."),
        click.option("--on-terminate", help="Rollback (default) or Keep."),
        click.option("--concurrency-key", help="Tasks with one key run one at a time."),
        click.option("--parallelism", type=int,
                     help="Runners at once; only 1 is taken (no task type partitions yet)."),
        click.option("--rate-limit", type=int, help="At most this many rows per second."),
        click.option("--reason", help="Why (recorded on the task)."),
    ]):
        func = decorator(func)
    return func


def task_request(task_file: Path | None, task_type: str | None, organization: str | None,
                 params: tuple[str, ...], name: str | None, paused: bool | None,
                 on_terminate: str | None, concurrency_key: str | None,
                 parallelism: int | None, rate_limit: int | None, reason: str | None,
                 ) -> dict[str, Any]:
    """The request body from the file and the options (:func:`taskfile.build`)."""
    return taskfile.build(task_file, {
        "type": task_type, "organization": organization, "name": name,
        "state": "Paused" if paused else None, "onTerminate": on_terminate,
        "concurrencyKey": concurrency_key, "parallelism": parallelism,
        "rateLimit": rate_limit, "reason": reason}, params)


@command(cli)
@task_options
@click.option("--rows", type=int, default=None, help="Rows to read (the API's default else).")
def validate(ctx: Context, rows: int | None, **options: Any) -> int:
    """Dry-run a task request: what the API would do with it; creates nothing.

    Exits 0 when the API calls it valid, 3 when not.
    """
    request = task_request(**options)
    with ctx.api() as api:
        report_ = api.json("POST", "/v1/tasks/validate", json=request,
                           params={"rows": rows} if rows else {})
    ctx.emit(report_, render.report_lines(report_))
    return OK if report_.get("valid") else OTHER_OUTCOME


@command(cli)
@task_options
@click.option("--idempotency-key", help="A retry with the same key returns the same task.")
def start(ctx: Context, idempotency_key: str | None, **options: Any) -> int:
    """Create (and start) a task from the options or a YAML file; prints its name."""
    request = task_request(**options)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with ctx.api() as api:
        response = api.request("POST", "/v1/tasks", json=request, headers=headers)
    task = response.json()
    replayed = response.headers.get("Idempotent-Replayed") == "true"
    ctx.emit(task, [f"{task['name']}" + (" (the task this key made before)" if replayed
                                         else ""),
                    f"  {render.progress_line(task)}"])
    return OK


@command(cli, "list")
@click.option("--org", "--organization", "organization", multiple=True,
              help="Only this organization's (repeat).")
@click.option("--type", "task_type", multiple=True, help="Only tasks of this type (repeat).")
@click.option("--phase", multiple=True, help="Only tasks in this phase (repeat).")
@click.option("--limit", type=int, default=None, help="Tasks per page (the API's default).")
@click.option("--cursor", default=None, help="The page to read (printed after a page).")
@click.option("--all", "every", is_flag=True, help="Follow the pages to the end.")
def list_(ctx: Context, organization: tuple[str, ...], task_type: tuple[str, ...],
          phase: tuple[str, ...], limit: int | None, cursor: str | None, every: bool) -> int:
    """List tasks, newest first."""
    items: list[dict[str, Any]] = []
    with ctx.api() as api:
        while True:
            params: dict[str, Any] = {"organization": list(organization),
                                      "type": list(task_type), "phase": list(phase)}
            params.update({k: v for k, v in (("limit", limit), ("cursor", cursor)) if v})
            page = api.json("GET", "/v1/tasks", params=params)
            items += page["items"]
            cursor = page.get("next")
            if not every or not cursor:
                break
    rows = [(t["name"], t["type"], t["organization"], render.progress_line(t))
            for t in items]
    more = [f"more: longtask list --cursor {cursor}"] if cursor else []
    ctx.emit({"items": items, "next": cursor},
             [*render.table(rows, ("NAME", "TYPE", "ORGANIZATION", "PHASE")), *more])
    return OK


@command(cli)
@click.argument("name")
def get(ctx: Context, name: str) -> int:
    """Show a task: its spec, phase, progress and the last request (who, why)."""
    with ctx.api() as api:
        task = api.json("GET", f"/v1/tasks/{name}")
    ctx.emit(task, render.task_lines(task))
    return OK


@command(cli)
@click.argument("name")
def history(ctx: Context, name: str) -> int:
    """Show a task's control requests (who, why) and transitions, oldest first."""
    with ctx.api() as api:
        body = api.json("GET", f"/v1/tasks/{name}/history")
    ctx.emit(body, [f"{e.get('at')}  {e.get('reason')}: {e.get('message')}"
                    for e in body.get("entries") or []]
             + [f"last request by {body.get('requestedBy')}: {body.get('reason')}"])
    return OK


def _control(ctx: Context, name: str, action: str, body: dict[str, Any]) -> int:
    with ctx.api() as api:
        task = api.json("POST", f"/v1/tasks/{name}/{action}", json=body)
    ctx.emit(task, [f"{name}: {action} requested", f"  {render.progress_line(task)}"])
    return OK


reason_option = click.option("--reason", default=None,
                             help="Why (recorded on the task and in its history).")


@command(cli)
@click.argument("name")
@reason_option
def pause(ctx: Context, name: str, reason: str | None) -> int:
    """Pause a task: no row is written once the API has answered."""
    return _control(ctx, name, "pause", {"reason": reason} if reason else {})


@command(cli)
@click.argument("name")
@reason_option
def resume(ctx: Context, name: str, reason: str | None) -> int:
    """Resume a paused task from its last checkpoint."""
    return _control(ctx, name, "resume", {"reason": reason} if reason else {})


@command(cli)
@click.argument("name")
@reason_option
@click.option("--rollback/--keep", default=None,
              help="Remove what it wrote, or keep it (default: the task's onTerminate).")
def terminate(ctx: Context, name: str, reason: str | None, rollback: bool | None) -> int:
    """Terminate a task, rolling back what it wrote unless it keeps it."""
    body: dict[str, Any] = {"reason": reason} if reason else {}
    if rollback is not None:
        body["rollback"] = rollback
    return _control(ctx, name, "terminate", body)


@command(cli)
@click.argument("name")
@reason_option
@click.option("--keep-writes", is_flag=True,
              help="Delete a task that may still run or has rows a rollback could undo, "
                   "knowing those rows stay (the API refuses it otherwise).")
def delete(ctx: Context, name: str, reason: str | None, keep_writes: bool) -> int:
    """Delete a task. Deleting is not undoing: what it wrote stays; to remove that,
    terminate it and delete it once it is RolledBack."""
    params: dict[str, Any] = {"keepWrites": "true"} if keep_writes else {}
    if reason:
        params["reason"] = reason
    with ctx.api() as api:
        response = api.request("DELETE", f"/v1/tasks/{name}", params=params)
    if response.status_code == 204:
        ctx.emit({"name": name, "deleted": True}, [f"{name}: deleted"])
    else:
        task = response.json()
        ctx.emit(task, [f"{name}: delete requested ({task.get('phase')}); it is gone once "
                        f"the operator has stopped what runs of it"])
    return OK


@command(cli)
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Show at most this many rows (pages followed).")
def conflicts(ctx: Context, name: str, limit: int) -> int:
    """Show the rows a rollback left in place, and why (changed by someone else since,
    or kept with a row that stays)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    with ctx.api() as api:
        while True:
            params: dict[str, Any] = {"limit": max(1, min(limit - len(items), 500))}
            if cursor:
                params["cursor"] = cursor
            page = api.json("GET", f"/v1/tasks/{name}/conflicts", params=params)
            items += page["items"]
            cursor = page.get("next")
            if not cursor or len(items) >= limit:
                break
    body = {"total": page["total"], "items": items[:limit], "next": cursor}
    ctx.emit(body, [*(f"{c['table']} {c['id']}: {c['reason']}" for c in items[:limit]),
                    f"{page['total']:,} rows left by the rollback, "
                    f"{len(items[:limit]):,} shown"])
    return OK


# ------------------------------------------------------------------------ watch, wait


def _events(api: Api, name: str, deadline: float | None) -> Iterator[Event]:
    """The task's watch events until the API ends the task's stream (``end``,
    ``deleted``, ``error``) or ``deadline`` (monotonic) passes (then a ``timeout``
    event); the API's own bound (``timeout``) is met by watching again."""
    while True:
        left = None if deadline is None else max(0.001, deadline - time.monotonic())
        try:
            for event in api.watch(name, left):
                if event.event == "timeout":
                    break
                yield event
                if event.event in ("end", "deleted", "error"):
                    return
            else:  # closed without a word (a proxy, a restart): not at once again
                time.sleep(min(1.0, left or 1.0))
        except ProblemAnswered as exc:
            if exc.status != 503:
                raise
            # Every watch slot taken (or Kubernetes away): watch again a little later.
            time.sleep(min(RETRY_WATCH_SECONDS, left or RETRY_WATCH_SECONDS))
        if deadline is not None and time.monotonic() >= deadline:
            yield Event("timeout", {})
            return


@command(cli)
@click.argument("name")
@click.option("--timeout", type=float, default=None, help="Stop watching after SECONDS.")
def watch(ctx: Context, name: str, timeout: float | None) -> int:
    """Follow a task until it ends: a progress bar with rate and ETA on a terminal, one
    line per change otherwise (``--json``: one JSON event a line)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    tty = sys.stdout.isatty() and not ctx.as_json
    last, shown = None, ""
    with ctx.api() as api:
        for event in _events(api, name, deadline):
            if ctx.as_json:
                click.echo(json.dumps({"event": event.event, "data": event.data}))
                continue
            if event.event == "task":
                last = event.data
                line = render.progress_line(last, bar=tty)
                if tty:
                    click.echo(f"\r\x1b[K{name} {line}", nl=False)
                elif line != shown:
                    click.echo(f"{name} {line}")
                shown = line
            elif tty and shown:
                click.echo("")
            if event.event == "deleted":
                click.echo(f"{name} was deleted", err=True)
            elif event.event == "error":
                raise Unreachable(f"the watch of {name} ended: "
                                  f"{event.data.get('detail')}")
            elif event.event == "timeout":
                click.echo(f"{name}: still {last and last.get('phase')} after {timeout} s",
                           err=True)
                return TIMED_OUT
    return OK


@command(cli)
@click.argument("name")
@click.option("--for", "phases", multiple=True, required=True, metavar="PHASE",
              help="The phase to wait for (repeat for any of several).")
@click.option("--timeout", type=float, required=True, help="Give up after SECONDS.")
def wait(ctx: Context, name: str, phases: tuple[str, ...], timeout: float) -> int:
    """Wait until a task is in one of the PHASEs.

    Exits 0 once it is, 3 when it ended in another final phase, 4 after the timeout, 1 on
    an error (an unknown phase is the API's 422).
    """
    deadline = time.monotonic() + timeout
    task: dict[str, Any] | None = None
    with ctx.api() as api:
        # The API knows the phases: an unknown one is its 422 on `phase`.
        api.request("GET", "/v1/tasks", params={"phase": list(phases), "limit": 1})
        for event in _events(api, name, deadline):
            if event.event == "task":
                task = event.data
                if task.get("phase") in phases:
                    ctx.emit(task, [f"{name} {render.progress_line(task)}"])
                    return OK
            elif event.event == "end" and task is not None:
                ctx.emit(task, [f"{name} ended {task.get('phase')}, not "
                                f"{' or '.join(phases)}: {task.get('message') or ''}"])
                return OTHER_OUTCOME
            elif event.event == "deleted":
                raise CliError(f"{name} was deleted before it was {' or '.join(phases)}")
            elif event.event == "error":
                raise Unreachable(f"the watch of {name} ended: {event.data.get('detail')}")
    phase = task.get("phase") if task else "unknown"
    ctx.emit(task, [f"{name} still {phase} after {timeout:g} s"])
    return TIMED_OUT


# ----------------------------------------------------------------------- output, errors


@command(cli)
@click.argument("name")
@click.option("-o", "--output", "target", required=True,
              type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the CSV here, once its length and SHA-256 check out.")
@click.option("--partial", is_flag=True, help="What a running or paused export has written.")
def output(ctx: Context, name: str, target: Path, partial: bool) -> int:
    """Download an export's CSV, checking it against the API's Content-Length and SHA-256
    (LongTask-Output-SHA256); a download that does not check out leaves no file."""
    with ctx.api() as api:
        facts = download.output(api, name, target, partial)
    ctx.emit(facts, [f"wrote {target}: {facts['bytes']:,} bytes, {facts['rows']} rows, "
                     f"sha256 {facts['sha256']} (checked)"])
    return OK


@command(cli)
@click.argument("name")
@click.option("--limit", type=int, default=100, show_default=True,
              help="Show at most this many row errors (pages followed).")
def errors(ctx: Context, name: str, limit: int) -> int:
    """Show the rows a task refused: line, column, reason, value."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    with ctx.api() as api:
        while True:
            params: dict[str, Any] = {"limit": min(limit - len(items), 500)}
            if cursor:
                params["cursor"] = cursor
            page = api.json("GET", f"/v1/tasks/{name}/errors", params=params)
            items += page["items"]
            cursor = page.get("next")
            if not cursor or len(items) >= limit:
                break
    body = {"total": page["total"], "stored": page["stored"], "items": items[:limit],
            "next": cursor}
    ctx.emit(body, [*(render.row_error_line(e) for e in items[:limit]),
                    f"{page['total']:,} row errors in all, {page['stored']:,} stored, "
                    f"{len(items[:limit]):,} shown"])
    return OK
