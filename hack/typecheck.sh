#!/usr/bin/env bash
# mypy cannot follow the package-dir mapping of pyproject.toml (runner/ is imported as
# longtask.runner, ...), so it checks a tree of symlinks laid out by import name.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree"
mkdir -p "$tree/longtask"
for f in longtask/*; do ln -s "../../../$f" "$tree/longtask/$(basename "$f")"; done
ln -s ../../../runner "$tree/longtask/runner"
ln -s ../../../operator "$tree/longtask/operator"
ln -s ../../../api "$tree/longtask/api"
ln -s ../../../cli "$tree/longtask/cli"
ln -s ../../devcluster "$tree/devcluster"
ln -s ../../demo "$tree/demo"
# mypy puts its working directory on the import path: run it in the tree, not in the
# repository root, whose operator/ folder would shadow the standard library's operator.
python=$(command -v "${PYTHON:-python}")
[[ $python == /* ]] || python="$PWD/$python"  # a venv's python, kept as it is named
cd "$tree"
exec "$python" -m mypy --config-file ../../pyproject.toml longtask devcluster demo "$@"
