"""The distribution's layout: folders mapped to ``longtask.*`` without shadowing the stdlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


# What each component may import of the others: only the shared package and, for the API's
# dry run, the runner's one facade. Everything else they share lives in longtask/.
COMPONENTS = {"api": "longtask.api", "operator": "longtask.operator", "runner": "longtask.runner",
              "cli": "longtask.cli"}
FACADES = {"api": {"longtask.runner.rules"}}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (absolute names only)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _foreign(folder: str) -> dict[str, set[str]]:
    """The other components' modules each file of ``folder`` imports, beside the facades."""
    others = [name for key, name in COMPONENTS.items() if key != folder]
    allowed = FACADES.get(folder, set())
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        bad = {m for m in _imports(path)
               if any(m == o or m.startswith(o + ".") for o in others)
               and not any(m == a or m.startswith(a + ".") or a.startswith(m + ".")
                           for a in allowed)}
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


@pytest.mark.parametrize("folder", sorted(COMPONENTS))
def test_components_meet_only_through_longtask(folder):
    assert _foreign(folder) == {}


def test_the_shared_package_imports_no_component():
    bad = {}
    for path in sorted((REPO / "longtask").rglob("*.py")):
        found = {m for m in _imports(path)
                 if any(m == n or m.startswith(n + ".") for n in COMPONENTS.values())}
        if found:
            bad[str(path.relative_to(REPO))] = found
    assert bad == {}


def test_the_facade_is_what_the_api_uses_of_the_runner():
    used = {m for path in (REPO / "api").rglob("*.py") for m in _imports(path)
            if m.startswith("longtask.runner")}
    assert used and all(m.startswith("longtask.runner.rules") or m == "longtask.runner"
                        for m in used), used


def test_the_command_imports_nothing_of_longtask_but_itself():
    """The CLI is a client of the API's HTTP interface: no server code, shared or not."""
    used = {m for path in (REPO / "cli").rglob("*.py") for m in _imports(path)
            if m == "longtask" or m.startswith("longtask.")}
    assert used and all(m.startswith("longtask.cli") for m in used), sorted(used)


def test_test_modules_have_unique_names():
    """The test folders are not packages, so pytest imports each test module under its
    base name (rootdir-relative ``prepend`` import mode): two ``test_x.py`` in different
    folders stop the whole suite at collection."""
    seen: dict[str, list[str]] = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
