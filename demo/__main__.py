"""``python -m demo [--quick]``: the three cases on real files, from nothing.

Starts a throwaway PostgreSQL cluster, applies the migrations, and plays the cases with
the runner in real processes (pause = SIGTERM, as suspending a Job does).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from demo.cases import Check, Demo, Sizes
from demo.control import ProcessControl
from devcluster import postgres
from longtask.db import connect
from longtask.db.migrate import upgrade


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status (0 when every check held)."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs (for CI)")
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    started = time.monotonic()
    print("Starting a throwaway PostgreSQL server and applying the migrations…", flush=True)
    with postgres.running() as server, tempfile.TemporaryDirectory() as logs:
        upgrade(server.url)
        conn = connect(server.url, application_name="longtask-demo")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("INSERT INTO collect.organizations (slug, name) "
                        "VALUES ('atlan-demo', 'Atlan Collect demo')")
        control = ProcessControl(server.url, Path(logs))
        demo = Demo(control, conn, "atlan-demo", sizes)
        try:
            demo.baseline()
            demo.export()
            demo.teams()
        except Check as exc:
            print(f"\nCHECK FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            control.close()
            conn.close()
    print(f"\nAll three cases done in {time.monotonic() - started:.0f} s; every check held.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
