#!/usr/bin/env bash
# Puts the development packages devcluster/ and demo/ on a virtual environment's path.
#
# They are not part of the distribution (the images must not carry them), and the
# repository root cannot go on sys.path itself: its operator/ folder would shadow the
# standard library's operator. So VENV/dev-packages holds one symlink per package, and a
# .pth file in the environment's site-packages names that folder.
#
#   hack/dev-path.sh VENV
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:?usage: $0 VENV}"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
links="$(cd "$venv" && pwd)/dev-packages"
rm -rf "$links"
mkdir -p "$links"
for package in devcluster demo; do
  ln -s "$root/$package" "$links/$package"
done
echo "$links" > "$site/longtask-dev.pth"
