#!/bin/sh
# The install steps of both images, in one place: the Dockerfiles run them, and
# tests/deploy/test_image_env.py runs the very same script into a fresh virtual environment
# on this machine, then starts what the image would start.
#
#   requirements/install.sh deps VENV REQUIREMENTS   new venv with the pinned, hashed deps
#   requirements/install.sh wheel SRC OUTDIR         build the project's wheel (pinned tools)
#   requirements/install.sh project VENV WHEELDIR    add the project's wheel, no dependencies
#
# Only wheels are installed (--only-binary): the slim base has no compiler, and a release
# that drops a wheel should fail here, not build from source. PYTHON picks the interpreter
# (default python3); the images use the base image's /usr/local/bin/python3.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1

usage() { echo "usage: $0 deps VENV REQS | wheel SRC OUTDIR | project VENV WHEELDIR" >&2; exit 2; }
[ $# -eq 3 ] || usage

case "$1" in
  deps)
    "$python" -m venv "$2"
    "$2/bin/pip" install --quiet --require-hashes --no-deps --only-binary=:all: -r "$3"
    ;;
  wheel)
    # setuptools and wheel from build.txt, not whatever build isolation would fetch.
    tools="$(mktemp -d)"
    "$python" -m venv "$tools"
    "$tools/bin/pip" install --quiet --require-hashes --no-deps --only-binary=:all: \
      -r "$here/build.txt"
    "$tools/bin/pip" wheel --quiet --no-deps --no-build-isolation --wheel-dir "$3" "$2"
    rm -rf "$tools"
    ;;
  project)
    # --force-reinstall: a cached test environment gets the current wheel of the same version.
    "$2/bin/pip" install --quiet --no-deps --no-index --force-reinstall "$3"/longtask-*.whl
    # Every installed distribution's requirements are met by what the venv holds.
    "$2/bin/pip" check
    ;;
  *) usage ;;
esac
