"""``python -m demo [--quick] [--keep] [--runner-only]``: the three cases on real files.

By default it starts the whole product on this machine — PostgreSQL, the local Kubernetes
control plane with the CRD, the operator and the REST API (:mod:`devcluster.stack`) — and
plays the cases through the REST API only, checking the database and the cluster after
each step. ``--keep`` leaves the stack running afterwards for a person to use.
``--runner-only`` skips Kubernetes and drives the runner processes directly.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from demo.cases import Check, Demo, Sizes
from demo.control import ApiControl, Control, ProcessControl
from devcluster import postgres, signals, stack
from longtask.db import connect
from longtask.db.migrate import upgrade

ORG = "atlan-demo"


def play(control: Control, db_url: str, sizes: Sizes, runner_pods=None) -> None:  # type: ignore[no-untyped-def]
    """Play the three cases; raises :class:`Check` when a check fails."""
    conn = connect(db_url, application_name="longtask-demo")
    conn.autocommit = True
    try:
        demo = Demo(control, conn, ORG, sizes, runner_pods)
        demo.baseline()
        demo.export()
        demo.teams()
    finally:
        conn.close()


def full_stack(sizes: Sizes, keep: bool) -> None:
    """The cases through the REST API on the whole stack."""
    print("Starting PostgreSQL, Kubernetes (etcd, kube-apiserver, kube-controller-manager, "
          "kube-scheduler, containerd and the kubelet running the runner image built from "
          "this checkout), the operator and the API…", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="longtask-demo-") as folder:
        live = stack.start(Path(folder), organizations=[ORG])
        try:
            print(f"  up in {time.monotonic() - started:.0f} s; API {live.api_url}", flush=True)
            control = ApiControl(live.api_url, live.tokens)
            try:
                play(control, live.db_url, sizes, live.runner_pods)
            finally:
                control.close()
            if keep:
                print(f"\nThe stack stays up. API: {live.api_url}/docs  "
                      f"token: {live.tokens[ORG]}\n"
                      f"  export KUBECONFIG={live.cluster.kubeconfig}\n"
                      f"  kubectl -n {live.namespace} get lt -w\n"
                      "Ctrl-C (or SIGTERM) stops everything.", flush=True)
                with contextlib.suppress(signals.Interrupted):  # the end the user asked for
                    signals.wait()
        finally:
            live.stop()


def runner_only(sizes: Sizes) -> None:
    """The cases with runner processes only (no Kubernetes)."""
    print("Starting a throwaway PostgreSQL server…", flush=True)
    with postgres.running() as server, tempfile.TemporaryDirectory() as logs:
        upgrade(server.url)
        conn = connect(server.url)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO collect.organizations (slug, name) VALUES (%s, %s)",
                        (ORG, "Atlan Collect demo"))
        conn.commit()
        conn.close()
        control = ProcessControl(server.url, Path(logs))
        try:
            play(control, server.url, sizes)
        finally:
            control.close()


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status (0 when every check held)."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs (for CI)")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--runner-only", action="store_true", help="no Kubernetes")
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    started = time.monotonic()
    # A stop signal ends the demo through the same clean-up as a failed check: every
    # process it started is stopped and its temporary folders are removed.
    with signals.stop_on_signals():
        try:
            if args.runner_only:
                runner_only(sizes)
            else:
                full_stack(sizes, args.keep)
        except Check as exc:
            print(f"\nCHECK FAILED: {exc}", file=sys.stderr)
            return 1
        except signals.Interrupted as stop:
            print(f"\n{stop}: the demo stopped everything it started.", file=sys.stderr)
            return 128 + stop.signum
    print(f"\nAll three cases done in {time.monotonic() - started:.0f} s; every check held.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
