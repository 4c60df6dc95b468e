"""The lock (``requirements/dev.txt``), the images' requirements compiled from it, and the
environment the tests run in: one set of versions everywhere (``requirements/lock.sh``)."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = "dev.txt"
IMAGE_FILES = {"runner.txt": (), "operator.txt": ("operator", "api"), "build.txt": None}
FIX = "run requirements/lock.sh (make lock), then make setup"
# A pin: `name==version \` (or `name[extras]==version \`: lock.sh keeps the extras a
# dependency asks for, e.g. selenium's urllib3[socks]) then its `--hash=sha256:…` lines.
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[A-Za-z0-9._,-]+\])?==(\S+) \\\n"
                 r"((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", re.MULTILINE)


def pins(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """``{canonical name: (version, hashes)}`` of ``requirements/<name>``."""
    text = (REPO / "requirements" / name).read_text()
    return {canonicalize_name(m.group(1)): (m.group(2), frozenset(re.findall(r"[0-9a-f]{64}",
                                                                              m.group(3))))
            for m in PIN.finditer(text)}


def wanted(extras: tuple[str, ...] | None, groups: tuple[str, ...] = ()) -> list[Requirement]:
    """What pyproject.toml asks: the base dependencies with ``extras`` (None: none of the
    base), and the dependency ``groups``, their included groups followed."""
    found = []
    if extras is not None:
        found += [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
        for extra in extras:
            found += [Requirement(r)
                      for r in PYPROJECT["project"]["optional-dependencies"][extra]]
    todo = list(groups)
    while todo:
        for item in PYPROJECT["dependency-groups"][todo.pop()]:
            if isinstance(item, dict):
                todo.append(item["include-group"])
            else:
                found.append(Requirement(item))
    return found


@pytest.mark.parametrize("name", [LOCK, *IMAGE_FILES])
def test_every_line_of_the_file_is_a_hashed_exact_pin(name: str) -> None:
    text = (REPO / "requirements" / name).read_text()
    requirement_lines = [line for line in text.splitlines()
                         if line and not line.startswith((" ", "#"))]

    assert len(requirement_lines) == len(pins(name)) > 0, (
        f"requirements/{name}: lines that are not `name==version` with hashes: "
        f"{[line for line in requirement_lines if not re.match(r'^[A-Za-z0-9._-]+==', line)]}")


@pytest.mark.parametrize(("name", "extras", "groups"),
                         [(LOCK, ("operator", "api", "cli"), ("dev",)),
                          ("runner.txt", (), ()),
                          ("operator.txt", ("operator", "api"), ()),
                          ("build.txt", None, ("build",))])
def test_the_file_pins_what_pyproject_asks(name: str, extras: tuple[str, ...] | None,
                                           groups: tuple[str, ...]) -> None:
    pinned = pins(name)

    for requirement in wanted(extras, groups):
        key = canonicalize_name(requirement.name)
        assert key in pinned, f"{requirement} is not pinned in requirements/{name}: {FIX}"
        version = pinned[key][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/{name} pins {key}=={version}, pyproject.toml asks {requirement}: "
            f"{FIX}")


@pytest.mark.parametrize("name", sorted(IMAGE_FILES))
def test_the_images_take_the_locks_versions_and_hashes(name: str) -> None:
    lock = pins(LOCK)

    differ = {key: (pin[0], lock.get(key, ("missing", frozenset()))[0])
              for key, pin in pins(name).items() if lock.get(key) != pin}

    assert differ == {}, (f"requirements/{name} pins other versions or hashes than the lock "
                          f"(image, lock): {differ}; {FIX}")


def test_the_runner_image_needs_only_the_base_dependencies() -> None:
    runner, operator = pins("runner.txt"), pins("operator.txt")

    assert not {"kopf", "fastapi", "kubernetes", "uvicorn"} & runner.keys()
    assert runner.items() <= operator.items(), "one version of each package in both images"


def test_the_test_environment_holds_exactly_the_lock() -> None:
    lock = {key: version for key, (version, _) in pins(LOCK).items()}
    installed = {canonicalize_name(d.metadata["Name"]): d.version
                 for d in metadata.distributions()}
    # The project itself (editable) and the installer the venv was made with are not pinned.
    installed.pop("longtask", None)
    installed.pop("pip", None)

    missing = {key: version for key, version in lock.items() if key not in installed}
    other = {key: (installed[key], version) for key, version in lock.items()
             if key in installed and installed[key] != version}
    extra = sorted(installed.keys() - lock.keys())

    assert (missing, other, extra) == ({}, {}, []), (
        f"{sys.prefix} is not the lock: missing {missing}, other versions (installed, "
        f"locked) {other}, not in the lock {extra}; run make setup")
