"""``python -m longtask.runner``: takes SIGTERM first, then loads and runs :mod:`.cli`.

The handler is installed before the heavier imports, so a stop that arrives while the
program is still starting is remembered (and honoured) rather than killing it half-way.
"""

from __future__ import annotations

import signal

_early_signals: list[int] = []
signal.signal(signal.SIGTERM, lambda signum, _frame: _early_signals.append(signum))


def main() -> None:
    """Console-script entry point."""
    from longtask.runner.cli import main as cli_main

    cli_main(early_signals=_early_signals)


if __name__ == "__main__":
    main()
