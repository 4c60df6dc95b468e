"""API benchmarks: latency under 50 concurrent clients, and upload throughput.

    python bench/api_bench.py [--clients 50] [--requests 2000] [--upload-mb 100]

Starts a throwaway PostgreSQL cluster and the local Kubernetes control plane, applies the
CRD, and runs ``python -m longtask.api`` as its own process (so the clients here do not
share its interpreter). Prints:

1. ``GET /v1/tasks/{name}``: p50 / p99 latency at ``--clients`` concurrent clients.
2. ``pause`` / ``resume``: p50 / p99 at the same concurrency, each client toggling its own
   task (a spec merge patch and an Event per request).
3. ``POST /v1/files`` of a ``--upload-mb`` CSV vs :func:`filestore.store` of the same bytes
   straight into the database: MB/s each and their ratio (the cost of HTTP and multipart).

Machines here are noisy and the clients share the cores: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import io
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import yaml
from longtask.api.auth import hash_token

from devcluster import kube, postgres
from longtask import filestore
from longtask.db import connect
from longtask.db.migrate import upgrade

TOKEN = "bench-token-3b7e91"
ROW = b"H-000000,Awa Diop,4,+221339612727\n"


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


def timed(clients: int, calls: list[Callable[[], httpx.Response]]) -> list[float]:
    def one(call: Callable[[], httpx.Response]) -> float:
        start = time.perf_counter()
        response = call()
        elapsed = time.perf_counter() - start
        assert response.status_code < 300, response.text
        return elapsed

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, calls))


def csv_bytes(megabytes: int) -> Iterator[bytes]:
    yield b"household_id,head_name,members,phone\n"
    block = ROW * ((1 << 16) // len(ROW))
    for _ in range((megabytes << 20) // len(block)):
        yield block


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--upload-mb", type=int, default=100)
    args = parser.parse_args()

    pg = postgres.start()
    cluster = kube.start()
    api: subprocess.Popen[bytes] | None = None
    try:
        url = pg.url.rpartition("/")[0] + "/postgres"
        upgrade(url)
        with connect(url) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO collect.organizations (slug, name) VALUES ('acme', 'Acme') "
                        "RETURNING id")
            org = cur.fetchone()[0]  # type: ignore[index]
            cur.execute("INSERT INTO collect.forms (organization_id, name) VALUES (%s, "
                        "'Households')", (org,))
        conn.close()
        admin = cluster.api_client()
        kube.apply_crds(admin, kube.REPO / "crds")
        folder = Path(tempfile.mkdtemp(prefix="longtask-api-bench-"))
        tokens = folder / "tokens.yaml"
        tokens.write_text(yaml.safe_dump({"tokens": [{
            "sha256": hash_token(TOKEN), "subject": "bench", "role": "admin",
            "organizations": ["*"]}]}))
        port = kube.free_port()
        env = {**os.environ, "LONGTASK_DATABASE_URL": url, "LONGTASK_API_PORT": str(port),
               "LONGTASK_API_HOST": "127.0.0.1", "LONGTASK_API_TOKENS_FILE": str(tokens),
               "LONGTASK_API_SESSION_SECRET": secrets.token_urlsafe(32),
               "LONGTASK_API_KUBECONFIG": str(cluster.kubeconfig),
               "LONGTASK_API_MAX_UPLOAD_BYTES": str((args.upload_mb + 10) << 20),
               "LONGTASK_API_DB_POOL_SIZE": str(args.clients), "LONGTASK_API_LOG_LEVEL": "WARNING"}
        api = subprocess.Popen([sys.executable, "-m", "longtask.api"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        kube.wait_for(lambda: _ready(base), timeout=30, what="the API to be ready")
        client = httpx.Client(base_url=base, timeout=120,
                              headers={"Authorization": f"Bearer {TOKEN}"},
                              limits=httpx.Limits(max_connections=args.clients))
        file_id = client.post("/v1/files", params={"organization": "acme"},
                              files={"file": ("f.csv", b"household_id\nH-1\n")}).json()["id"]
        names = [client.post("/v1/tasks", json={
            "type": "BaselineUpload", "organization": "acme", "state": "Paused",
            "params": {"form": "Households", "fileId": file_id, "keyColumn": "household_id"},
        }).json()["name"]
            for _ in range(args.clients)]
        print(f"{args.clients} concurrent clients, {args.requests} requests each measurement")

        alone = timed(1, [functools.partial(client.get, f"/v1/tasks/{names[0]}")] * 200)
        p50, p99 = percentiles(alone)
        print(f"0. GET /v1/tasks/{{name}}, one client:  p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
        reads = timed(args.clients, [
            functools.partial(client.get, f"/v1/tasks/{names[i % len(names)]}")
            for i in range(args.requests)])
        p50, p99 = percentiles(reads)
        print(f"1. GET /v1/tasks/{{name}}      p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")

        # Round r toggles every task once: resume in even rounds, pause in odd ones.
        toggles = timed(args.clients, [
            functools.partial(
                client.post,
                f"/v1/tasks/{names[i % len(names)]}/{('resume', 'pause')[(i // len(names)) % 2]}",
                json={"reason": "bench"})
            for i in range(args.requests)])
        p50, p99 = percentiles(toggles)
        print(f"2. pause / resume             p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")

        size = args.upload_mb << 20
        start = time.perf_counter()
        response = client.post(
            "/v1/files", params={"organization": "acme"},
            files={"file": ("big.csv", _Stream(csv_bytes(args.upload_mb)), "text/csv")})
        over_http = time.perf_counter() - start
        assert response.status_code == 201, response.text
        data = b"".join(csv_bytes(args.upload_mb))
        with connect(url) as conn:
            start = time.perf_counter()
            filestore.store(conn, io.BytesIO(data), organization="acme", filename="big.csv")
            direct = time.perf_counter() - start
        conn.close()
        mb = size / (1 << 20)
        print(f"3. upload {mb:.0f} MB: API {mb / over_http:6.1f} MB/s, file store directly "
              f"{mb / direct:6.1f} MB/s, ratio {direct / over_http:.2f} (target >= 0.7)")
        client.close()
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=15)
        cluster.stop()
        pg.stop()
    return 0


def _ready(base: str) -> bool | None:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200 or None
    except httpx.HTTPError:
        return None


class _Stream(io.RawIOBase):
    """The CSV generated on the fly, so the client never holds the whole file either."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


if __name__ == "__main__":
    sys.exit(main())
