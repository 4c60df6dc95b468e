"""The distribution's layout: folders mapped to ``longtask.*`` without shadowing the stdlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROBE = ("import operator, importlib; "
         "print(operator.__file__); "
         "print(importlib.import_module('longtask.operator').__file__); "
         "print(importlib.import_module('longtask.runner').__file__); "
         "print(importlib.import_module('longtask.api').__file__)")


def probe(cwd: Path, *args: str) -> list[str]:
    out = subprocess.run([sys.executable, *args, "-c", PROBE], cwd=cwd, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return out.split()


def test_import_operator_is_the_standard_library_from_the_repository_root():
    stdlib, ours, runner, api = probe(REPO)
    assert Path(stdlib).parent == Path(subprocess.__file__).parent, stdlib
    assert Path(ours) == REPO / "operator" / "__init__.py"
    assert Path(runner) == REPO / "runner" / "__init__.py"
    assert Path(api) == REPO / "api" / "__init__.py"


def test_import_operator_is_the_standard_library_anywhere_else(tmp_path):
    stdlib, *_ = probe(tmp_path)
    assert Path(stdlib).parent == Path(subprocess.__file__).parent, stdlib
