"""A runner pod on the real node talks to PostgreSQL and to nothing else.

The pod shares the host's network (the local cluster's admission policy), so the kernel's
socket tables are the host's: the runner's own sockets are found through the file
descriptors of its process (``/proc/<pid>/fd`` → socket inodes → ``/proc/<pid>/net/*``),
sampled every 20 ms while it works. Also: ``kubectl logs`` of the runner pod reads the
runner's log through the kubelet.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import operator_support as s
import psycopg2.extensions
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def _address(hex_address: str) -> tuple[str, int]:
    """``0100007F:1538`` (or a 32-digit IPv6 address) from /proc/net/* as (ip, port)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # The kernel prints each 32-bit word of the address in host (little-endian) order.
    packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(packed)), int(port, 16)


def runner_sockets(pid: int) -> list[tuple[str, str, tuple[str, int], tuple[str, int]]]:
    """``(protocol, state, local, remote)`` of every inet socket process ``pid`` holds."""
    inodes = set()
    with os.scandir(f"/proc/{pid}/fd") as fds:
        for fd in fds:
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((proto, fields[3], _address(fields[1]), _address(fields[2])))
    return found


def test_a_runner_pod_connects_to_postgresql_only_and_kubectl_logs_reads_it(
        tasks: s.Tasks, operator_process: s.OperatorProcess, villages: Any,
        db: psycopg2.extensions.connection, db_url: str) -> None:
    postgres = (urlparse(db_url).hostname, urlparse(db_url).port)
    uid = tasks.create("watched", s.baseline_spec(villages("watched"), "watched",
                                                  rate_limit=3000))["metadata"]["uid"]
    pid = tasks.runner_pid(uid)

    seen: set[tuple[str, str, tuple[str, int], tuple[str, int]]] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            seen.update(runner_sockets(pid))
        except (FileNotFoundError, ProcessLookupError):
            break  # the runner has exited
        time.sleep(0.02)
    phase = tasks.wait_phase("watched", "Succeeded", "Failed", timeout=60,
                             operator=operator_process)["status"]["phase"]
    pods = tasks.pods(uid)
    logs = tasks.kubectl("logs", pods[0]["metadata"]["name"]) if pods else ""

    assert phase == "Succeeded"
    remote = {(state, r) for _, state, _, r in seen}
    assert remote, "the runner held a connection while it worked"
    assert {r for _, r in remote} == {postgres}, f"connections other than PostgreSQL: {seen}"
    assert all(state != LISTEN for state, _ in remote), f"the runner listens: {seen}"
    assert {proto for proto, *_ in seen} <= {"tcp", "tcp6"}, f"no UDP, no raw: {seen}"
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "task_complete" and e.get("task") == uid
               for e in entries), f"kubectl logs of the runner pod:\n{logs}"
