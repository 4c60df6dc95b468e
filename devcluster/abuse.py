"""What one organization, one bad file or one slow client tries against another: the
scenarios of the abuse suite (tests/security) and of its benchmark (bench/security_bench.py).

Each scenario speaks HTTP to a running API and returns what it saw; the tests assert on it,
the benchmark prints it. Organization ``acme`` is the victim (:func:`plant` gives it a
task, files, an export output, row errors and rollback conflicts), ``globex`` the attacker.

- :func:`cross_organization`: every operation of the API's OpenAPI document, and the
  concurrency keys, tried with globex's token against acme's things;
- :func:`fuzz`: a property-based run (schemathesis) of every operation with each token;
- :func:`hostile_cells`: cells of every field type made to keep a pattern busy, at several
  lengths, through ``POST /v1/tasks/validate``, while ``/healthz`` is probed;
- :func:`slow_load`: another client's latency while slow clients and watch open/close
  cycles run, and its latency alone;
- :func:`memory`: the API process's resident memory under the largest accepted form and
  dry runs; the API runs as its own process (:class:`ApiProcess`) for it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from devcluster import kube, seed

ACME, GLOBEX = "acme", "globex"
SECRET = "Zq7-acme-only"  # in every cell of acme's files: never in an answer to globex
HTTP_TIMEOUT = 30.0  # seconds: the longest one request of a scenario waits
EVERY_TYPE_FORM = "EveryType"
KEY_FIELD = "record_id"
# Cell shapes that keep a pattern busy (bench/cells_bench.py): name -> cell of n characters.
SHAPES: dict[str, Callable[[int], str]] = {
    "spaces": lambda n: "1" + " " * (n - 2) + "1",
    "digits": lambda n: "1" * n,
    "colons": lambda n: ("1:" * n)[:n],
    "dashes": lambda n: ("1-" * n)[:n],
    "commas": lambda n: ("1," * n)[:n],
    "words": lambda n: ("Jan 1 " * n)[: n - 1] + "x",
}
FIELD_TYPES = ("text", "integer", "decimal", "boolean", "date", "datetime", "phone",
               "select_one", "select_multiple", "geopoint")


def p99(samples: Sequence[float]) -> float:
    """The 99th percentile of ``samples`` (inclusive method), in their unit."""
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------------ the API process


@dataclass
class ApiProcess:
    """``python -m longtask.api`` as a child process, serving ``url``."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def status(self, key: str) -> int:
        """A ``/proc/<pid>/status`` size (``VmRSS``, ``VmHWM``) in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def api_env(settings: Any) -> dict[str, str]:
    """``LONGTASK_API_*`` variables for an ``ApiSettings`` (fields left at None omitted)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"LONGTASK_API_{name.upper()}"] = str(value)
    return env


def launch_api(settings: Any, log: Path, timeout: float = 30.0) -> ApiProcess:
    """Start the API with ``settings`` (an ``ApiSettings``) on a loopback port; wait until
    ``/readyz`` answers 200. Raises ``TimeoutError`` (naming ``log``) when it does not."""
    port = kube.free_port()
    env = {**os.environ, **api_env(settings), "LONGTASK_API_HOST": "127.0.0.1",
           "LONGTASK_API_PORT": str(port)}
    out = log.open("ab")
    process = subprocess.Popen([sys.executable, "-m", "longtask.api"], env=env,
                               stdout=out, stderr=subprocess.STDOUT)
    out.close()
    api = ApiProcess(process, f"http://127.0.0.1:{port}", log)

    def ready() -> bool | None:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode}: see {log}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{api.url}/readyz", timeout=2).status_code == 200 or None
        return None

    try:
        kube.wait_for(ready, timeout=timeout, what=f"the API to be ready (log: {log})")
    except BaseException:
        api.stop()
        raise
    return api


# ------------------------------------------------------------------------- acme's things


def seed_organizations(conn: Any) -> dict[str, int]:
    """Organizations acme and globex (autocommit ``conn``), acme's Households form, a form
    with a field of every type (:data:`EVERY_TYPE_FORM`) and its export form. Ids by name."""
    acme = seed.organization(conn, ACME)
    globex = seed.organization(conn, GLOBEX)
    households = seed.form(conn, acme, "Households", [
        ("household_id", "text", True), ("head_name", "text", True),
        ("members", "integer", False), ("phone", "phone", False)])
    seed.form(conn, globex, "Households", [("head_name", "text", True)])
    every = seed.form(conn, acme, EVERY_TYPE_FORM, [(KEY_FIELD, "text", True)] + [
        (f"{t}_field", t, False) for t in FIELD_TYPES])
    with conn.cursor() as cur:
        cur.execute("UPDATE collect.form_fields SET options = %s WHERE form_id = %s "
                    "AND type LIKE 'select%%'", (json.dumps({"choices": ["a", "b"]}), every))
    return {ACME: acme, GLOBEX: globex, "households": households, "every": every}


@dataclass
class Victim:
    """acme's things globex tries to reach, and the strings no answer to globex may hold."""

    tasks: list[str]            # LongTask names: pending, with row errors, export, teams
    chosen_names: list[str]     # the names acme chose for them
    files: list[str]            # file ids
    secrets: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        """A task that has not run (control requests would change it)."""
        return self.tasks[0]

    @property
    def export(self) -> str:
        """An Export with an output."""
        return self.tasks[2]


def _run_inline(runner_db_url: str, task: Mapping[str, Any],
                mode: Literal["run", "rollback"] = "run") -> None:
    """Run the real runner's code for ``task`` in this process, as its Job would."""
    from longtask.runner.cli import execute
    from longtask.runner.engine import StopToken, TaskDefinition

    definition = TaskDefinition(uid=uuid.UUID(task["uid"]), type=task["type"],
                                organization=task["organization"], params=dict(task["params"]),
                                name=task["name"], namespace="default", rate_limit=None)
    code = execute(definition, mode, runner_db_url, StopToken(), None)
    if code != 0:
        raise RuntimeError(f"the runner's {mode} of {task['name']} exited with {code}")


def _upload(client: httpx.Client, data: bytes, organization: str = ACME) -> dict[str, Any]:
    response = client.post("/v1/files", params={"organization": organization},
                           files={"file": ("acme.csv", data, "text/csv")})
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
    body: dict[str, Any] = response.json()
    return body


def _create(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/tasks", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"create answered {response.status_code}: {response.text[:300]}")
    task: dict[str, Any] = response.json()
    return task


def plant(acme: httpx.Client, conn: Any, organization_id: int, runner_db_url: str,
          export_rows: int = 300) -> Victim:
    """Give acme (its operator's client ``acme``) a pending BaselineUpload, one run with
    row errors, an Export of ``export_rows`` submissions run to its output, and a
    BulkTeamCreate rolled back with conflicts; all run by the real runner in this process.
    ``conn`` is an autocommit connection of the migration owner (``organization_id`` is
    acme's); ``runner_db_url`` logs in as the runner's role."""
    households = (f"household_id,head_name,members,phone\n"
                  f"H-1,{SECRET} Awa,4,+221339612727\nH-2,{SECRET} Moussa,many,\n").encode()
    pending_file = _upload(acme, households)
    errors_file = _upload(acme, households)
    teams_file = _upload(acme, f"team,manager_phone,member_phones\n{SECRET}-North,9876543210,"
                               "9876543211\n".encode())
    baseline: dict[str, Any] = {"type": "BaselineUpload", "organization": ACME,
                "params": {"form": "Households", "keyColumn": "household_id"}}
    pending = _create(acme, {**baseline, "name": "acme-pending", "params": {
        **baseline["params"], "fileId": pending_file["id"]}})
    errors = _create(acme, {**baseline, "name": "acme-errors", "params": {
        **baseline["params"], "fileId": errors_file["id"]}})
    _run_inline(runner_db_url, errors)
    form = seed.submission_form(conn, organization_id)
    seed.submissions(conn, organization_id, form, export_rows,
                     dt.datetime(2017, 8, 1, tzinfo=dt.UTC), dt.datetime(2017, 9, 1, tzinfo=dt.UTC))
    export = _create(acme, {"type": "Export", "organization": ACME, "name": "acme-export",
                            "concurrencyKey": f"Export/{ACME}/nightly", "params": {
                                "form": "household-survey", "from": "2017-08-01",
                                "to": "2017-08-31"}})
    _run_inline(runner_db_url, export)
    teams = _create(acme, {"type": "BulkTeamCreate", "organization": ACME, "name": "acme-teams",
                           "params": {"fileId": teams_file["id"]}})
    _run_inline(runner_db_url, teams)
    with conn.cursor() as cur:
        cur.execute("UPDATE collect.teams SET name = name || ' (renamed)' WHERE name LIKE %s",
                    (f"{SECRET}%",))
    _run_inline(runner_db_url, teams, "rollback")
    tasks = [pending, errors, export, teams]
    files = [pending_file, errors_file, teams_file]
    secrets = [SECRET, *(t["name"] for t in tasks), *(t["uid"] for t in tasks),
               *(f["id"] for f in files), *(f["sha256"] for f in files if f.get("sha256"))]
    return Victim(tasks=[t["name"] for t in tasks],
                  chosen_names=["acme-pending", "acme-errors", "acme-export", "acme-teams"],
                  files=[f["id"] for f in files], secrets=secrets)


# ---------------------------------------------------------------- cross-organization matrix


@dataclass
class Attempt:
    """One request globex makes; ``refused`` are the answers that count as a refusal."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    files: dict[str, Any] | None = None
    refused: frozenset[int] = frozenset({404})
    empty_list: bool = False  # a 200 with no items also counts as refused (lists)
    invalid_report: bool = False  # a 200 dry run report saying invalid counts as refused


@dataclass
class CrossOrgResult:
    """What :func:`cross_organization` saw."""

    attempts: int = 0
    refused: int = 0
    leaked_bytes: int = 0
    operations: int = 0
    uncovered: list[str] = field(default_factory=list)  # "METHOD /path" without a case
    failures: list[str] = field(default_factory=list)   # each attempt not refused, or leaking


_FORBIDDEN = frozenset({403, 404})
_KEY_REFUSED = frozenset({403, 422})


def attempts(victim: Victim) -> dict[str, list[Attempt]]:
    """globex's attempts on acme's things, by ``"METHOD /path template"`` of the OpenAPI
    document. Public operations (health, metrics) are answered, and only checked for data."""
    names = victim.tasks + victim.chosen_names
    control = {"reason": "globex was here"}
    export_params = {"form": "household-survey", "from": "2017-08-01", "to": "2017-08-31"}
    create: dict[str, Any] = {"type": "BaselineUpload", "params": {"form": "Households",
                                                     "keyColumn": "household_id"}}
    table: dict[str, list[Attempt]] = {
        "POST /v1/files": [Attempt("POST", "/v1/files", {"organization": ACME},
                                   files={"file": ("x.csv", b"household_id\nH-9\n")},
                                   refused=_FORBIDDEN)],
        "GET /v1/files/{file_id}": [Attempt("GET", f"/v1/files/{f}") for f in victim.files],
        "GET /v1/storage": [Attempt("GET", "/v1/storage", {"organization": ACME},
                                    refused=_FORBIDDEN)],
        "GET /v1/tasks": [Attempt("GET", "/v1/tasks", {"organization": ACME}, empty_list=True,
                                  refused=_FORBIDDEN),
                          Attempt("GET", "/v1/tasks", empty_list=True, refused=frozenset())],
        "POST /v1/tasks/validate": [
            Attempt("POST", "/v1/tasks/validate", json={**create, "organization": ACME, "params": {
                **create["params"], "fileId": victim.files[0]}}, refused=_FORBIDDEN),
            Attempt("POST", "/v1/tasks/validate", json={**create, "organization": GLOBEX,
                                                         "params": {**create["params"],
                                                                    "fileId": victim.files[0]}},
                    refused=frozenset({404, 422}), invalid_report=True)],
        "POST /v1/tasks": [
            Attempt("POST", "/v1/tasks", json={**create, "organization": ACME, "params": {
                **create["params"], "fileId": victim.files[0]}}, refused=_FORBIDDEN),
            Attempt("POST", "/v1/tasks", json={**create, "organization": GLOBEX, "params": {
                **create["params"], "fileId": victim.files[0]}}, refused=frozenset({404, 422})),
            # Concurrency keys: another organization's, or one naming none.
            Attempt("POST", "/v1/tasks", json={
                "type": "Export", "organization": GLOBEX,
                "concurrencyKey": f"Export/{ACME}/nightly", "params": export_params},
                refused=_KEY_REFUSED),
            Attempt("POST", "/v1/tasks", json={
                "type": "Export", "organization": GLOBEX, "concurrencyKey": "nightly",
                "params": export_params},
                refused=_KEY_REFUSED),
            Attempt("POST", "/v1/tasks", json={
                **create, "organization": GLOBEX, "concurrencyKey": f"BaselineUpload/{ACME}",
                "params": {"form": "Households", "fileId": victim.files[0],
                           "keyColumn": "head_name"}}, refused=_KEY_REFUSED | {404}),
        ],
        "GET /v1/tasks/{name}": [Attempt("GET", f"/v1/tasks/{n}") for n in names],
        "PATCH /v1/tasks/{name}": [Attempt("PATCH", f"/v1/tasks/{n}", {"reason": "x"},
                                           json={"state": "Paused"}) for n in names],
        "DELETE /v1/tasks/{name}": [Attempt("DELETE", f"/v1/tasks/{n}", {"keepWrites": "true"})
                                    for n in names],
        "GET /healthz": [Attempt("GET", "/healthz", refused=frozenset({200}))],
        "GET /readyz": [Attempt("GET", "/readyz", refused=frozenset({200}))],
        "GET /metrics": [Attempt("GET", "/metrics", refused=frozenset({200}))],
    }
    for action in ("pause", "resume", "terminate"):
        table[f"POST /v1/tasks/{{name}}/{action}"] = [
            Attempt("POST", f"/v1/tasks/{n}/{action}", json=control) for n in names]
    for read in ("errors", "conflicts", "history", "output", "output/info"):
        table[f"GET /v1/tasks/{{name}}/{read}"] = [
            Attempt("GET", f"/v1/tasks/{n}/{read}", {"partial": "true"} if read == "output"
                    else {}) for n in names]
    table["GET /v1/tasks/{name}/watch"] = [
        Attempt("GET", f"/v1/tasks/{n}/watch", {"timeout": 1}) for n in names]
    return table


def _leaked(answer: bytes, asked: str, secrets: Sequence[str]) -> int:
    """Bytes of acme's ``secrets`` in ``answer`` that the request (``asked``) did not carry."""
    return sum(len(s) * answer.count(s.encode()) for s in secrets if s not in asked)


def cross_organization(url: str, attacker_token: str, victim: Victim) -> CrossOrgResult:
    """Every operation of ``url``'s ``/openapi.json`` tried with the attacker's token."""
    result = CrossOrgResult()
    operations = httpx.get(f"{url}/openapi.json", timeout=HTTP_TIMEOUT).json()["paths"]
    table = attempts(victim)
    listed = {f"{method.upper()} {path}" for path, item in operations.items()
              for method in item if method in ("get", "post", "put", "patch", "delete")}
    result.operations = len(listed)
    result.uncovered = sorted(listed - set(table))
    with httpx.Client(base_url=url, headers=bearer(attacker_token),
                      timeout=HTTP_TIMEOUT) as client:
        # Reads first, deletes last: a delete let through must not hide a read let through.
        order = {"GET": 0, "POST": 1, "PATCH": 2, "DELETE": 3}
        for operation in sorted(listed & set(table),
                                key=lambda op: (order.get(op.split()[0], 1), op)):
            for attempt in table[operation]:
                response = client.request(attempt.method, attempt.path, params=attempt.params,
                                          json=attempt.json, files=attempt.files)
                asked = f"{attempt.path} {attempt.params} {json.dumps(attempt.json)}"
                answer = response.content + json.dumps(dict(response.headers)).encode()
                leaked = _leaked(answer, asked, victim.secrets)
                ok = response.status_code == 200
                refused = response.status_code in attempt.refused or (
                    attempt.empty_list and ok and response.json().get("items") == []) or (
                    attempt.invalid_report and ok and response.json().get("valid") is False)
                result.attempts += 1
                result.refused += refused
                result.leaked_bytes += leaked
                if not refused or leaked:
                    result.failures.append(
                        f"{attempt.method} {attempt.path} {attempt.params}: "
                        f"{response.status_code}, {leaked} bytes of acme's: "
                        f"{response.text[:300]}")
    return result


# --------------------------------------------------------------------------------- fuzz


@dataclass
class FuzzResult:
    """Requests :func:`fuzz` made, and each 5xx answer (operation, status, body)."""

    requests: int = 0
    operations: int = 0
    server_errors: list[str] = field(default_factory=list)


def fuzz(url: str, tokens: Sequence[str], examples: int) -> FuzzResult:
    """Up to ``examples`` generated requests per operation and token (schemathesis from
    ``/openapi.json``; hypothesis explores each operation's parameters and bodies)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    result = FuzzResult()

    def run(operation: Any, token: str) -> None:
        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def one(case: Any) -> None:
            response = case.call(base_url=url, headers=bearer(token), timeout=HTTP_TIMEOUT)
            result.requests += 1
            if response.status_code >= 500:
                result.server_errors.append(
                    f"{operation.label}: {response.status_code} {response.text[:200]}")

        one()

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    for found in schema.get_all_operations():
        operation = found.ok()  # type: ignore[union-attr]
        result.operations += 1
        for token in tokens:
            run(operation, token)
    return result


# ------------------------------------------------------------------------- hostile cells


@dataclass
class CellsResult:
    """Per field type and cell length: the worst time per cell (s) over the groups of
    shapes; every validate status; ``/healthz`` probes made while they ran, and their codes."""

    per_cell: dict[str, dict[int, float]] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    stopped_by: set[str] = field(default_factory=set)
    probes: list[int] = field(default_factory=list)
    probes_during: int = 0

    def ratio(self, field_type: str) -> float:
        """The field type's time per cell at the longest length over the shortest."""
        lengths = sorted(self.per_cell[field_type])
        return self.per_cell[field_type][lengths[-1]] / self.per_cell[field_type][lengths[0]]


def hostile_file(field_type: str, length: int, shapes: Sequence[str], file_bytes: int) -> bytes:
    """An EveryType CSV of about ``file_bytes`` whose ``field_type`` column holds cells of
    ``length`` characters, the ``shapes`` in turn (at least one row per shape)."""
    header = [KEY_FIELD] + [f"{t}_field" for t in FIELD_TYPES]
    column = header.index(f"{field_type}_field")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    rows = max(len(shapes), file_bytes // length)
    for i in range(rows):
        row = [f"R-{i}"] + [""] * len(FIELD_TYPES)
        row[column] = SHAPES[shapes[i % len(shapes)]](length)
        writer.writerow(row)
    return out.getvalue().encode()


def hostile_cells(url: str, token: str, *, lengths: Sequence[int] = (1_000, 10_000, 100_000),
                  groups: Sequence[Sequence[str]] = (tuple(SHAPES),), file_bytes: int = 600_000,
                  repeats: int = 1) -> CellsResult:
    """Upload a hostile file per field type, length and group of shapes, and time its dry
    run (``POST /v1/tasks/validate?rows=5000``, best of ``repeats``) per cell; ``/healthz``
    is probed from another thread all along."""
    result = CellsResult()
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as client:
            while not done.is_set():
                result.probes.append(client.get("/healthz").status_code)
                time.sleep(0.05)

    prober = threading.Thread(target=probe, name="healthz-probe", daemon=True)
    with httpx.Client(base_url=url, headers=bearer(token), timeout=HTTP_TIMEOUT) as client:
        prober.start()
        try:
            for field_type in FIELD_TYPES:
                for length in lengths:
                    worst = 0.0
                    for shapes in groups:
                        data = hostile_file(field_type, length, shapes, file_bytes)
                        cells = data.count(b"\n") - 1
                        file_id = _upload(client, data)["id"]
                        body = {"type": "BaselineUpload", "organization": ACME, "params": {
                            "form": EVERY_TYPE_FORM, "fileId": file_id, "keyColumn": KEY_FIELD}}
                        best = float("inf")
                        for _ in range(repeats):
                            started = time.perf_counter()
                            response = client.post("/v1/tasks/validate", json=body,
                                                   params={"rows": 5000})
                            best = min(best, time.perf_counter() - started)
                            result.statuses.append(response.status_code)
                            if response.status_code == 200:
                                result.stopped_by.add(response.json()["sampled"]["stoppedBy"])
                        worst = max(worst, best / cells)
                        result.probes_during = len(result.probes)
                    result.per_cell.setdefault(field_type, {})[length] = worst
        finally:
            done.set()
            prober.join(timeout=HTTP_TIMEOUT)
    return result


# ------------------------------------------------------------------ slow clients, watches


@dataclass
class LoadResult:
    """Latencies (s) of the other client alone and under load, and what the load saw."""

    idle: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    probe_statuses: list[int] = field(default_factory=list)
    watch_statuses: list[int] = field(default_factory=list)
    slow_clients: int = 0
    most_watches_seen: float = 0.0
    watches_after: float = -1.0


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _head(method: str, path: str, token: str, extra: Mapping[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: api", f"Authorization: Bearer {token}",
             *[f"{k}: {v}" for k, v in extra.items()]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def gauge(url: str, name: str) -> float:
    """The value of an unlabelled metric of ``/metrics``."""
    for line in httpx.get(f"{url}/metrics", timeout=HTTP_TIMEOUT).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise KeyError(name)


@contextlib.contextmanager
def slow_clients(url: str, token: str, export: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` slow clients: half uploads trickling a byte every half second from a
    thread, half downloads of ``export``'s output that read nothing (a tiny receive
    window). All closed on exit."""
    boundary = "b0undary"
    start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
             "filename=\"slow.csv\"\r\nContent-Type: text/csv\r\n\r\nhousehold_id\n").encode()
    socks: list[socket.socket] = []
    stop = threading.Event()
    trickling: list[socket.socket] = []
    thread: threading.Thread | None = None

    def trickle() -> None:
        while not stop.wait(0.5):
            for sock in list(trickling):
                try:
                    sock.sendall(b"H")
                except OSError:
                    trickling.remove(sock)  # cut off by the server: its bound worked

    try:
        for i in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            sock.settimeout(HTTP_TIMEOUT)
            sock.connect(_address(url))
            socks.append(sock)
            if i % 2:
                sock.sendall(_head("GET", f"/v1/tasks/{export}/output?partial=true", token, {}))
            else:
                sock.sendall(_head("POST", f"/v1/files?organization={ACME}", token, {
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                    "Content-Length": str(len(start) + 1_000_000)}) + start)
                trickling.append(sock)
        thread = threading.Thread(target=trickle, name="trickle", daemon=True)
        thread.start()
        yield socks
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=5)
        for sock in socks:
            sock.close()


def _timed_gets(client: httpx.Client, path: str, count: int, statuses: list[int],
                until: threading.Event | None = None) -> list[float]:
    """``count`` sequential GETs of ``path`` (and more until ``until`` is set); seconds each."""
    times: list[float] = []
    while len(times) < count or (until is not None and not until.is_set()):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        statuses.append(response.status_code)
    return times


def _settled(url: str, timeout: float) -> float:
    """The open watch streams once they are 0, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (value := gauge(url, "longtask_api_watch_streams")) > 0:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return value


def slow_load(url: str, *, victim: Victim, acme_token: str, other_token: str, other_task: str,
              slow: int = 20, cycles: int = 200, probes: int = 300, rounds: int = 2,
              settle_seconds: float = 30.0) -> LoadResult:
    """The other client (``other_token``) reads ``other_task`` alone, then under load, in
    ``rounds`` alternations (so that what else the machine does weighs on both alike):
    ``probes / rounds`` reads alone, then at least as many while ``slow`` slow clients
    (acme's) hold connections and acme runs ``cycles / rounds`` watch open/close cycles
    on its task, reading until the cycles end. After each round the slow clients close and
    the watch streams are waited for (at most ``settle_seconds``)."""
    result = LoadResult(slow_clients=slow)
    path = f"/v1/tasks/{other_task}"
    per_round = max(1, probes // rounds)

    def watch_cycles(count: int, done: threading.Event) -> None:
        try:
            with httpx.Client(base_url=url, headers=bearer(acme_token),
                              timeout=HTTP_TIMEOUT) as acme:
                for _ in range(count):
                    with acme.stream("GET", f"/v1/tasks/{victim.task}/watch",
                                     params={"timeout": 30}) as response:
                        if response.status_code == 200:
                            next(response.iter_lines())
                        result.watch_statuses.append(response.status_code)
        finally:
            done.set()

    def watch_gauge(done: threading.Event) -> None:
        while not done.wait(0.25):
            result.most_watches_seen = max(result.most_watches_seen,
                                           gauge(url, "longtask_api_watch_streams"))

    with httpx.Client(base_url=url, headers=bearer(other_token), timeout=HTTP_TIMEOUT) as other:
        _timed_gets(other, path, 20, [])  # warm up
        for number in range(rounds):
            result.idle += _timed_gets(other, path, per_round, result.probe_statuses)
            done = threading.Event()
            count = cycles // rounds + (number < cycles % rounds)
            with slow_clients(url, acme_token, victim.export, slow):
                time.sleep(1)  # let the server take them up
                threads = [threading.Thread(target=watch_cycles, args=(count, done),
                                            name="watch-cycles", daemon=True),
                           threading.Thread(target=watch_gauge, args=(done,),
                                            name="watch-gauge", daemon=True)]
                for thread in threads:
                    thread.start()
                result.loaded += _timed_gets(other, path, per_round, result.probe_statuses,
                                             until=done)
                for thread in threads:
                    thread.join(timeout=settle_seconds + HTTP_TIMEOUT)
            result.watches_after = _settled(url, settle_seconds)
    return result


# ------------------------------------------------------------------------------- memory


@dataclass
class MemoryResult:
    """The API process's resident memory (bytes) before and at its peak, and the answers."""

    before: int = 0
    peak: int = 0
    form_status: int = 0
    many_fields_status: int = 0
    validate_statuses: list[int] = field(default_factory=list)


def _largest_form(file_bytes: int, fields: int, field_bytes: int) -> Iterator[bytes]:
    boundary = "f0rmb0undary"
    for i in range(fields):
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note{i}\"\r\n\r\n"
               ).encode() + b"n" * field_bytes + b"\r\n"
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
           "filename=\"big.csv\"\r\nContent-Type: text/csv\r\n\r\n"
           "household_id,head_name,members,phone\n").encode()
    row = b"H-000000,Awa Diop,4,+221339612727\n"
    block = row * ((1 << 16) // len(row))
    for _ in range(max(0, file_bytes - 100) // len(block)):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def memory(api: ApiProcess, token: str, *, upload_bytes: int, parts: int, field_bytes: int,
           validations: int, validate_file_bytes: int) -> MemoryResult:
    """``VmRSS`` of the API before, then ``VmHWM`` after: the largest form it accepts
    (``parts - 1`` fields of ``field_bytes`` and a file of about ``upload_bytes``), a form
    of 50,000 small fields (refused), and ``validations`` dry runs at once of a hostile file
    of about ``validate_file_bytes`` (100,000-character cells in every column)."""
    result = MemoryResult(before=api.status("VmRSS"))
    headers = {"Content-Type": "multipart/form-data; boundary=f0rmb0undary"}
    with httpx.Client(base_url=api.url, headers=bearer(token), timeout=120) as client:
        result.form_status = client.post(
            "/v1/files", params={"organization": ACME}, headers=headers,
            content=_largest_form(upload_bytes, parts - 1, field_bytes)).status_code
        result.many_fields_status = client.post(
            "/v1/files", params={"organization": ACME}, headers=headers,
            content=_largest_form(1000, 50_000, 4)).status_code
        header = [KEY_FIELD] + [f"{t}_field" for t in FIELD_TYPES]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        shapes = list(SHAPES.values())
        for i in range(max(1, validate_file_bytes // (100_000 * len(FIELD_TYPES)))):
            writer.writerow([f"R-{i}"] + [shapes[(i + j) % len(shapes)](100_000)
                                          for j in range(len(FIELD_TYPES))])
        file_id = _upload(client, out.getvalue().encode())["id"]
    body = {"type": "BaselineUpload", "organization": ACME, "params": {
        "form": EVERY_TYPE_FORM, "fileId": file_id, "keyColumn": KEY_FIELD}}
    barrier = threading.Barrier(validations)

    def validate() -> None:
        with httpx.Client(base_url=api.url, headers=bearer(token), timeout=120) as client:
            barrier.wait(timeout=HTTP_TIMEOUT)
            result.validate_statuses.append(
                client.post("/v1/tasks/validate", json=body, params={"rows": 5000}).status_code)

    threads = [threading.Thread(target=validate, daemon=True) for _ in range(validations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    result.peak = api.status("VmHWM")
    return result


def memory_bound(settings: Any, parts: int, field_bytes: int) -> int:
    """What the API may add to its resident memory under :func:`memory`, in bytes: 64 MiB
    of room (threads, caches, the allocator's arenas), the form's fields held whole, and,
    for each dry run the pool may run at once, four times what one may read (the bytes,
    their text, the parsed cells)."""
    per_validation = 4 * int(settings.validate_max_bytes)
    return (64 << 20) + parts * field_bytes + int(settings.max_validations) * per_validation
