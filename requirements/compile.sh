#!/usr/bin/env bash
# Regenerates the pinned, hashed requirements the images install (Dockerfile.runner,
# Dockerfile.operator) and tests/deploy/ replays, with `uv pip compile` (uv from PyPI,
# installed into the tools cache). Versions are held to those in the development
# environment (.venv), so the images run what the test suite ran:
#   runner.txt    the base dependencies (the runner needs nothing more)
#   operator.txt  the base dependencies + the `operator` and `api` extras (one image)
#   build.txt     setuptools and wheel, to build the project's wheel without isolation
#
#   requirements/compile.sh            after a change to pyproject.toml or .venv
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
UV_VERSION=0.13.8
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
tools="${XDG_CACHE_HOME:-$HOME/.cache}/longtask/tools"
uv="$tools/uv-venv/bin/uv"
if [ ! -x "$uv" ] || [ "$("$uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv "$tools/uv-venv"
  "$tools/uv-venv/bin/pip" install --quiet "uv==$UV_VERSION"
fi

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
# Everything .venv holds except the project itself (an editable install).
.venv/bin/pip freeze --exclude-editable | grep -v '^#' > "$constraints"

compile() {  # compile OUTPUT SOURCE [uv options...]
  local out="$1" src="$2"; shift 2
  "$uv" pip compile "$src" "$@" --quiet --generate-hashes --no-strip-extras \
    --python-version 3.11 --python-platform linux --constraint "$constraints" \
    --custom-compile-command "requirements/compile.sh" --output-file "requirements/$out"
}
compile runner.txt pyproject.toml
compile operator.txt pyproject.toml --extra operator --extra api
compile build.txt requirements/build.in
# The constraints file is temporary: drop its path from the "via" notes, so that the output
# depends only on the pins.
sed -i -e '/^    #   -c /d' -e 's/^    # via -c .*$/    # via the development environment/' \
  requirements/runner.txt requirements/operator.txt requirements/build.txt
