"""Hostile cells: the worst time to read one cell of each field type, at three lengths.

    python bench/cells_bench.py [--repeats 5]

For every field type of ``longtask.values``, cells of 1,000, 10,000 and 100,000 characters
made to keep a pattern busy (long runs of spaces between digits, digits, separators, words)
are read by the field's parser; the figure is the worst time over the shapes (best of the
repeats for each). Reading must be linear in the cell's length: the 100k/1k ratio of each
type is printed against a target of at most 150 (100 for linear, with room for noise). The
reference is the time to strip the same cell, the least any reader does, measured in the
same run. No server is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable

from longtask.values import FieldSpec, FieldType, InvalidValue, make_parser

LENGTHS = (1_000, 10_000, 100_000)
TARGET_RATIO = 150
SHAPES: dict[str, Callable[[int], str]] = {
    "spaces": lambda n: "1" + " " * (n - 2) + "1",
    "digits": lambda n: "1" * n,
    "colons": lambda n: ("1:" * n)[:n],
    "dashes": lambda n: ("1-" * n)[:n],
    "commas": lambda n: ("1," * n)[:n],
    "words": lambda n: ("Jan 1 " * n)[: n - 1] + "x",
}


def best_time(read: Callable[[str], object], cell: str, repeats: int) -> float:
    """The least of ``repeats`` timings of ``read(cell)``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        with contextlib.suppress(InvalidValue):
            read(cell)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    """Print one line per field type and the worst ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'type':16} " + "  ".join(f"{n:>9,} chars" for n in LENGTHS)
          + "   100k/1k (target <= 150)")
    worst_ratio = 0.0
    for field_type in FieldType:
        options = {"choices": ["a", "b"]} if field_type.value.startswith("select") else None
        read = make_parser(FieldSpec("f", field_type, options=options))
        worst = []
        for n in LENGTHS:
            worst.append(max(best_time(read, shape(n), args.repeats)
                             for shape in SHAPES.values()))
        # A floor of the strip's own time keeps a sub-microsecond 1k figure from making
        # the ratio meaningless.
        floor = best_time(str.strip, SHAPES["spaces"](LENGTHS[0]), args.repeats)
        ratio = worst[-1] / max(worst[0], floor)
        worst_ratio = max(worst_ratio, ratio)
        print(f"{field_type.value:16} " + "  ".join(f"{w * 1e3:12.3f} ms" for w in worst)
              + f"   {ratio:8.1f}")
    verdict = "met" if worst_ratio <= TARGET_RATIO else "NOT met"
    print(f"worst 100k/1k ratio {worst_ratio:.1f}: target {verdict}")


if __name__ == "__main__":
    main()
