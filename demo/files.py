"""Input files for the demo, made from the real files in ``data/real`` (see its README).

Each function returns bytes ready to upload, and says in its docstring what it changed.
"""

from __future__ import annotations

import csv
import io
import random

import phonenumbers

from devcluster import realdata

VILLAGES = realdata.path(realdata.KARNATAKA)
PRACTICES = realdata.path(realdata.EPRACCUR)


def village_baseline(rows: int, *, prefix: str = "V", offset: int = 0) -> bytes:
    """The Karnataka village list repeated to ``rows`` records (from record ``offset``),
    each with a unique ``external_id`` first column (the file's own Village Code repeats
    across constituencies, so it cannot be the key)."""
    lines = VILLAGES.read_text(encoding="utf-8").splitlines()
    header, body = lines[0], lines[1:]
    out = [f"external_id,{header}"]
    out.extend(f"{prefix}{i:07d},{body[i % len(body)]}" for i in range(offset, offset + rows))
    return ("\n".join(out) + "\n").encode()


def swap_columns(data: bytes, first: str, second: str) -> bytes:
    """The same file with the values of two columns swapped, headers left as they were
    (the mistake a support user notices a second after pressing Start)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    header = next(reader)
    a, b = header.index(first), header.index(second)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in reader:
        row[a], row[b] = row[b], row[a]
        writer.writerow(row)
    return out.getvalue().encode()


def team_file(teams: int, *, shift: int = 0, seed: int = 7) -> bytes:
    """``teams`` teams named after real NHS practices (deduplicated), each with its real
    telephone number as the manager's and two members with generated UK mobiles.

    ``shift`` moves the manager-phone column down by that many rows (the mistake of
    case 3): every team then gets another team's manager.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    practices: list[tuple[str, str]] = []
    with PRACTICES.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            name, phone = row[1].strip(), row[17].strip()
            if name and phone and name not in seen:
                seen.add(name)
                practices.append((name, phone))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["team", "manager_phone", "member_phones"])
    names = [p[0] for p in practices]
    phones = [p[1] for p in practices]
    if shift:
        phones = phones[-shift:] + phones[:-shift]
    for i in range(min(teams, len(practices))):
        members = ";".join(_uk_mobile(rng) for _ in range(2))
        writer.writerow([names[i], phones[i], members])
    return out.getvalue().encode()


def _uk_mobile(rng: random.Random) -> str:
    """A UK mobile number in the national format people write (``07xxx xxxxxx``) that
    the phone-number library accepts as valid."""
    while True:
        number = f"07{rng.randint(700, 999)} {rng.randint(100000, 999999)}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number, "GB")):
            return number
