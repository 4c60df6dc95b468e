#!/usr/bin/env bash
# The lock: exact versions, with hashes, of everything the project installs.
#
#   dev.txt       the development and test environment (pyproject.toml: the base
#                 dependencies, the operator, api and cli extras, the dev and build groups);
#                 `make setup` installs exactly this. It is the one source of truth:
#   runner.txt    the runner image: the base dependencies, at dev.txt's versions
#   operator.txt  the operator and API image: base + operator + api extras, likewise
#   build.txt     setuptools and wheel, to build the project's wheel without isolation
#
#   requirements/lock.sh             after editing pyproject.toml: resolve what changed,
#                                    keep every other pin as it is
#   requirements/lock.sh --upgrade   move every pin to the newest release pyproject allows
#   requirements/lock.sh --upgrade-package NAME [...]   move those pins only
#
# (`make lock` and `make lock-upgrade` run the first two.) Then `make setup` installs the
# new lock, and tests/test_lock.py checks that the four files and .venv agree. The resolver
# is uv's `pip compile`, at UV_VERSION, installed from PyPI into the tools cache.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
UV_VERSION=0.13.9
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/longtask/tools/uv-$UV_VERSION"
uv="$venv/bin/uv"
if [ ! -x "$uv" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

upgrade=()
case "${1:-}" in
  "") ;;
  --upgrade) upgrade=(--upgrade) ;;
  --upgrade-package)
    shift
    [ $# -gt 0 ] || { echo "usage: $0 --upgrade-package NAME [NAME...]" >&2; exit 2; }
    for name in "$@"; do upgrade+=(--upgrade-package "$name"); done ;;
  *) echo "usage: $0 [--upgrade | --upgrade-package NAME...]" >&2; exit 2 ;;
esac

# One platform, one interpreter: the images' (Debian bookworm's CPython 3.11 on Linux).
compile() {  # compile OUTPUT [uv pip compile options...]
  local out="$1"; shift
  "$uv" pip compile "$@" --quiet --generate-hashes --no-strip-extras \
    --python-version 3.11 --python-platform linux \
    --custom-compile-command "requirements/lock.sh" --output-file "requirements/$out"
}
compile dev.txt pyproject.toml --extra operator --extra api --extra cli --group dev "${upgrade[@]}"
# The images' files take dev.txt's pins as constraints: a subset of the lock, never a
# version of their own.
compile runner.txt pyproject.toml --constraint requirements/dev.txt
compile operator.txt pyproject.toml --extra operator --extra api --constraint requirements/dev.txt
compile build.txt --group pyproject.toml:build --constraint requirements/dev.txt
# "via" notes that name the constraints file say nothing the lock does not: drop them.
sed -i -e '/^    #   -c requirements\/dev.txt$/d' -e 's/^    # via -c requirements\/dev.txt$/    # via requirements\/dev.txt/' \
  requirements/runner.txt requirements/operator.txt requirements/build.txt
echo "lock.sh: requirements/{dev,runner,operator,build}.txt written; run 'make setup' to install"
