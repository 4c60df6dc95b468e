"""The Dockerfiles: hadolint and the rules they must keep (their pinned requirements:
tests/test_lock.py)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from deploy_support import REPO, run, sample_run_job, tool

DOCKERFILES = {"Dockerfile.runner": "runner.txt", "Dockerfile.operator": "operator.txt"}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(name: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / name).read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(dockerfile: str) -> None:
    result = run([tool("hadolint"), "--no-color", str(REPO / dockerfile)], check=False)

    assert result.returncode == 0, f"hadolint {dockerfile}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_the_image_rules_hold(dockerfile: str) -> None:
    steps = instructions(dockerfile)
    words = [w for w, _ in steps]
    args = dict(steps)

    build_args = [a for w, a in steps if w == "ARG"]
    assert "PYTHON_IMAGE=python:3.11-slim-bookworm" in build_args, "base pinned to a minor"
    assert [a for w, a in steps if w == "FROM"][-1] == "${PYTHON_IMAGE}"
    assert words.count("FROM") == 2, "multi-stage: a build stage and a runtime stage"
    assert args["USER"] == "10001:10001", "the numeric user operator/manifests.py runs as"
    entrypoint = json.loads(args["ENTRYPOINT"])
    assert isinstance(entrypoint, list), "exec form: the process gets SIGTERM itself"
    assert "HEALTHCHECK" in words
    labels = " ".join(a for w, a in steps if w == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, f"OCI label {key} missing"
    runs = [a for w, a in steps if w == "RUN"]
    assert any(f"requirements/install.sh deps /opt/longtask requirements/{DOCKERFILES[dockerfile]}"
               in r for r in runs), runs


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_the_image_builds_its_wheel_from_a_context_holding_every_package_folder(
        dockerfile: str) -> None:
    steps = instructions(dockerfile)
    copies = [a for w, a in steps if w == "COPY" and not a.startswith("--from")]
    folders = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    ignored = {line.strip().rstrip("/") for line in
               (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}

    assert copies == ["requirements/ requirements/", ". ."], copies
    assert not folders & ignored, f".dockerignore keeps out {sorted(folders & ignored)}"
    assert not {"pyproject.toml", "requirements", "README.md"} & ignored


def test_the_runner_image_command_is_the_one_the_operator_jobs_run() -> None:
    job = sample_run_job()
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    entrypoint = json.loads(dict(instructions("Dockerfile.runner"))["ENTRYPOINT"])

    assert command[: len(entrypoint)] == entrypoint, (command, entrypoint)


def test_the_dockerignore_keeps_the_checkout_out_of_the_context() -> None:
    ignored = (REPO / ".dockerignore").read_text().splitlines()

    for entry in (".git", ".venv", "tests", "build", "**/__pycache__"):
        assert entry in ignored, f"{entry} would be sent to the image build"


# Debian's python3: the interpreter of the images' base (hack/base-image.sh).
DEBIAN_PYTHON = Path("/usr/bin/python3")


@pytest.mark.timeout(300)
def test_the_install_steps_keep_the_repository_root_off_sys_path(tmp_path: Path) -> None:
    """The images run requirements/install.sh in WORKDIR /src, the repository's root, whose
    operator/ folder shadows the standard library's operator for any Python that puts the
    working directory on sys.path: `python -m venv` does, and venv imports operator. With
    Debian's python3 (no site hook importing the real operator first) a plain venv fails
    there; the install steps must not."""
    if not (DEBIAN_PYTHON.exists() and (Path("/usr/lib/python3.11/ensurepip")).is_dir()):
        pytest.fail("Debian's python3 with venv is missing: apt-get install python3-venv",
                    pytrace=False)
    # As in the image build: no PYTHONSAFEPATH from the caller (the Makefile exports it).
    bare_env = ["env", "-u", "PYTHONSAFEPATH"]
    plain = run([*bare_env, DEBIAN_PYTHON, "-m", "venv", "--without-pip", tmp_path / "plain"],
                cwd=REPO, check=False)
    assert plain.returncode != 0 and "cannot import name" in plain.stderr, (
        "python -m venv in the repository root no longer trips on operator/; this test "
        f"proves nothing until it finds another way:\n{plain.stderr}")

    run([*bare_env, REPO / "requirements" / "install.sh", "tools", tmp_path / "tools"],
        env={"PYTHON": str(DEBIAN_PYTHON)}, cwd=REPO, timeout=240)
    out = run([tmp_path / "tools" / "bin" / "python", "-P", "-c",
               "import operator, setuptools, wheel; print(operator.__file__)"], cwd=REPO)

    assert out.stdout.strip() == "/usr/lib/python3.11/operator.py", out.stdout
