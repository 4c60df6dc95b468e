#!/bin/sh
# The install steps of both images, in one place: the Dockerfiles run them
# (hack/build-images.sh builds the images; tests/deploy/test_built_images.py runs them).
#
#   requirements/install.sh deps VENV REQUIREMENTS   new venv with the pinned, hashed deps
#   requirements/install.sh tools VENV               new venv with the pinned build tools
#   requirements/install.sh wheel SRC OUTDIR [TOOLS] build the project's wheel with the tools
#                                                    venv TOOLS (default: a throwaway one)
#   requirements/install.sh project VENV WHEELDIR    add the project's wheel, no dependencies
#
# Only wheels are installed (--only-binary): the slim base has no compiler, and a release
# that drops a wheel should fail here, not build from source. PYTHON picks the interpreter
# (default python3); the images use the base image's python3.
#
# The images run this from WORKDIR /src, the repository's root, whose folder operator/
# would shadow the standard library's operator module for any Python that puts the
# working directory on sys.path (`python -m venv` does, and venv imports operator). So
# every Python started here, pip's build backend too, runs in safe-path mode (-P,
# PYTHONSAFEPATH): neither the working directory nor a script's folder is on sys.path.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1 PYTHONSAFEPATH=1

usage() {
  echo "usage: $0 deps VENV REQS | tools VENV | wheel SRC OUTDIR [TOOLS] | project VENV WHEELDIR" >&2
  exit 2
}
# setuptools and wheel from build.txt, not whatever build isolation would fetch.
tools() {
  "$python" -P -m venv "$1"
  "$1/bin/pip" install --quiet --require-hashes --no-deps --only-binary=:all: \
    -r "$here/build.txt"
}
case "${1:-}:$#" in
  deps:3|project:3|tools:2|wheel:3|wheel:4) ;;
  *) usage ;;
esac

case "$1" in
  deps)
    "$python" -P -m venv "$2"
    "$2/bin/pip" install --quiet --require-hashes --no-deps --only-binary=:all: -r "$3"
    ;;
  tools) tools "$2" ;;
  wheel)
    if [ $# -eq 4 ]; then
      "$4/bin/pip" wheel --quiet --no-deps --no-build-isolation --wheel-dir "$3" "$2"
    else
      throwaway="$(mktemp -d)"
      tools "$throwaway"
      "$throwaway/bin/pip" wheel --quiet --no-deps --no-build-isolation --wheel-dir "$3" "$2"
      rm -rf "$throwaway"
    fi
    ;;
  project)
    # --force-reinstall: a cached test environment gets the current wheel of the same version.
    "$2/bin/pip" install --quiet --no-deps --no-index --force-reinstall "$3"/longtask-*.whl
    # Every installed distribution's requirements are met by what the venv holds.
    "$2/bin/pip" check
    ;;
  *) usage ;;
esac
