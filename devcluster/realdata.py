"""The real input files carried in ``data/real`` (their sources and licences: its README).

The demo, the tests and the benchmarks read them through :func:`path`, so a file that is
missing is reported with where it was expected rather than as a bare ``FileNotFoundError``.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent.parent / "data" / "real"

KARNATAKA = "29-karnataka-constituency.csv"  # 14,859 villages, a 20-column header, LF
EPRACCUR = "epraccur.csv"  # 14,357 NHS GP practices, no header, CRLF, every field quoted
BLOCKS = "blocks.csv"  # 7,232 Indian blocks; two columns named "Block Name"
ST_LOUIS = "St-Louis-Data-Collection-Campaign-Gth_Hs_Osm_11.csv"  # 104 submissions, 50 columns

NAMES = (KARNATAKA, EPRACCUR, BLOCKS, ST_LOUIS)


def path(name: str) -> Path:
    """The path of one of :data:`NAMES` in ``data/real``.

    Raises ``FileNotFoundError`` naming the folder when the file is not there (a checkout
    made without it, or a name that is not one of the four).
    """
    found = FOLDER / name
    if not found.is_file():
        raise FileNotFoundError(f"real input file {name!r} expected in {FOLDER} "
                                f"(one of {', '.join(NAMES)}; see data/real/README.md)")
    return found
