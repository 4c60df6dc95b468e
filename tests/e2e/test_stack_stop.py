"""``python -m devcluster.stack`` (and ``devcluster.postgres``) started as a shell starts a
background job, then signalled: each stops everything it started and removes its data."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from devcluster import hoststate

pytestmark = pytest.mark.timeout(300)

START_TIMEOUT = 180.0  # the control plane, the operator and the API on a busy 2-core machine
STOP_TIMEOUT = 60.0


def processes_under(folder: Path) -> list[str]:
    """Command lines of the processes that name ``folder`` (or a path below it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(folder) in cmdline:
                found.append(cmdline[:200])
    return found


def as_background_job() -> None:
    """What `cmd &` in a non-interactive shell does to the job: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def accepts(host: str, port: int) -> bool:
    """True if something listens on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def read_until_served(proc: subprocess.Popen[str]) -> list[str]:
    """The lines the stack printed up to its "stops everything" line, read within
    START_TIMEOUT; fails the test with what it printed otherwise."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if "stops everything" in line:
            return seen
    pytest.fail(f"the stack did not come up within {START_TIMEOUT:.0f} s "
                f"(exit {proc.poll()}); it printed:\n{''.join(seen)}")


def printed_field(printed: str, pattern: str) -> str:
    """The first group of ``pattern`` in what the stack printed; fails the test if absent."""
    match = re.search(pattern, printed, re.MULTILINE)
    assert match, f"{pattern!r} not in what the stack printed:\n{printed}"
    return match[1]


@pytest.mark.cluster
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_background_stack_stops_everything_on_a_signal(signum: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "devcluster.stack"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, preexec_fn=as_background_job,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        printed = "".join(read_until_served(proc))
        kubeconfig = Path(printed_field(printed, r"^  export .*\bKUBECONFIG=(\S+)"))
        urls = {"API": printed_field(printed, r"^API:\s+(\S+)"),
                "PostgreSQL": printed_field(printed, r"^database:\s+(\S+)"),
                "kube-apiserver": yaml.safe_load(kubeconfig.read_text())
                ["clusters"][0]["cluster"]["server"]}
        listening = {name: (urlparse(u).hostname or "", urlparse(u).port or 0)
                     for name, u in urls.items()}
        workdir = Path(printed_field(printed, r"^work folder: (\S+)"))
        assert all(accepts(h, p) for h, p in listening.values()), listening
        assert workdir.is_dir()

        proc.send_signal(signum)
        code = proc.wait(timeout=STOP_TIMEOUT)
    finally:
        if proc.poll() is None:  # the test failed before its signal: stop the stack anyway
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    assert code == 0, f"exit {code}"
    left = [name for name, (h, p) in listening.items() if accepts(h, p)]
    assert left == [], f"still listening after the stop: {left}"
    assert not workdir.exists(), f"{workdir} was left behind"
    # The real node's share of the host: processes, mounts, its hold on the host state.
    assert processes_under(workdir) == [], "containerd, the kubelet or a shim left running"
    assert hoststate.mounts_under(workdir) == [], "mounts left under the stack's folder"
    assert not any(h.startswith(str(workdir)) for h in hoststate.holders())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_background_postgres_stops_its_server_on_a_signal(signum: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "devcluster.postgres"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, preexec_fn=as_background_job)
    try:
        assert proc.stdout is not None
        url = urlparse(proc.stdout.readline().strip())  # bounded by the test's timeout
        address = (url.hostname or "", url.port or 0)
        assert accepts(*address), f"nothing listens at {address}"

        proc.send_signal(signum)
        code = proc.wait(timeout=STOP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    assert code == 0, f"exit {code}"
    assert not accepts(*address), f"PostgreSQL still listens at {address}"
