"""Row rendering for the upload's COPY: whatever the values, each line must read back (COPY
text unescaping, then JSON) as the row's object without its blank values."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from longtask.runner.tasks.baseline import _render

TEXT = st.lists(st.sampled_from(['a', '"', ',', '\\', '\t', '\n', '\r', '%', 'é', '","',
                                 '\x01', '\u2028', ' ']), max_size=6).map("".join)
VALUE = st.one_of(st.none(), TEXT, st.integers(-2**53, 2**53), st.booleans(),
                  st.lists(TEXT, max_size=2), st.fixed_dictionaries({"lat": st.floats(-90, 90)}))


def copy_unescape(field: bytes) -> str:
    out, i, text = [], 0, field.decode()
    while i < len(text):
        if text[i] == "\\":
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[str], list[list[Any]], set[int]]:
    rows = draw(st.integers(1, 6))
    width = draw(st.integers(0, 4))
    names = [f"f{i}%{draw(TEXT)}" for i in range(width)]
    # Columns of one kind each (as a field type gives), sometimes with blanks or a mix.
    kind = st.sampled_from([TEXT, st.integers(-2**53, 2**53), st.booleans(), VALUE])
    columns = []
    for _ in range(width):
        cell = draw(kind)
        columns.append(draw(st.lists(st.one_of(cell, st.none()) if draw(st.booleans())
                                     else cell, min_size=rows, max_size=rows)))
    keys = draw(st.lists(TEXT.filter(bool), min_size=rows, max_size=rows))
    bad = set(draw(st.lists(st.integers(0, rows - 1), max_size=2)))
    return keys, names, columns, bad


@settings(max_examples=400, deadline=None)
@given(table=tables())
# A value ending in '",' put the escaped quote, the comma and the closing quote together:
# a '","' that does not separate.
@example(table=(["k1", "k2"], ["f"], [["a", '","",'], ], set()))
def test_each_line_reads_back_as_its_row(table: tuple[list[str], list[str], list[list[Any]],
                                                     set[int]]) -> None:
    keys, names, columns, bad = table
    lines = _render(keys, names, columns, bad)
    assert len(lines) == len(keys)
    for j, line in enumerate(lines):
        if j in bad:
            assert line is None
            continue
        assert line is not None
        fields = line.split(b"\t")
        assert len(fields) == 2, line
        assert copy_unescape(fields[0]) == keys[j]
        want = {n: c[j] for n, c in zip(names, columns, strict=True) if c[j] is not None}
        assert json.loads(copy_unescape(fields[1])) == want
