"""``python -m longtask.cli`` and the ``longtask`` script."""

from __future__ import annotations

from longtask.cli.commands import main

if __name__ == "__main__":
    main()
