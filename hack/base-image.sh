#!/usr/bin/env bash
# Makes the Python base image of both Dockerfiles from Debian's packages, where the official
# python image cannot be pulled: `mmdebstrap --variant=minbase bookworm` with Python 3.11
# (python3, python3-venv, python-is-python3 for the Dockerfiles' `python`), passwd
# (groupadd/useradd), and what the official slim image adds (ca-certificates, netbase,
# tzdata). apt comes with minbase (the operator image installs tini with it).
#
#   hack/base-image.sh                 build it when the cache does not match, print the archive
#   hack/base-image.sh --print-archive print where the archive is (or would be), build nothing
#   hack/base-image.sh --rebuild       build it even when the cache matches (e.g. for updates)
#
# The result is an OCI archive of the image `localhost/longtask/python-base:3.11-bookworm`
# (never the official image's name), cached outside git in
# ${XDG_CACHE_HOME:-$HOME/.cache}/longtask/python-base/ beside a stamp of what it was built
# from (this script, the suite, the packages, the host's apt sources); it is reused while the
# stamp matches. The Debian mirror is the host's (/etc/apt/sources.list.d/debian.sources, or
# LONGTASK_APT_SOURCES): the image's own apt sources are that same file. Needs root,
# mmdebstrap and buildah (hack/install-system-deps.sh); about a minute.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
suite=bookworm
name=localhost/longtask/python-base:3.11-bookworm
packages=python3,python3-venv,python-is-python3,passwd,ca-certificates,netbase,tzdata
sources="${LONGTASK_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/longtask/python-base"
archive="$cache/python-base.oci.tar"

mode=build
case "${1:-}" in
  "") ;;
  --print-archive) mode=print ;;
  --rebuild) mode=rebuild ;;
  *) echo "usage: $0 [--print-archive | --rebuild]" >&2; exit 2 ;;
esac
if [ "$mode" = print ]; then echo "$archive"; exit 0; fi

if [ ! -r "$sources" ]; then
  echo "no apt sources at $sources: set LONGTASK_APT_SOURCES to a deb822 .sources file" >&2
  exit 1
fi
for tool in mmdebstrap buildah; do
  command -v "$tool" >/dev/null || {
    echo "$tool is missing: run hack/install-system-deps.sh as root" >&2; exit 1; }
done

# What the image is made from; a change of any of them makes a new one.
stamp_text() {
  printf 'suite %s\nname %s\npackages %s\nscript %s\nsources %s\n' "$suite" "$name" \
    "$packages" "$(sha256sum <"$here/base-image.sh" | cut -d' ' -f1)" \
    "$(grep -v '^[[:space:]]*#' "$sources" | sha256sum | cut -d' ' -f1)"
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ "$mode" = build ] && [ -f "$archive" ] && [ -f "$cache/stamp" ] \
    && [ "$(cat "$cache/stamp")" = "$(stamp_text)" ]; then
  echo "$archive"
  exit 0
fi

work="$(mktemp -d "$cache/build.XXXXXX")"
ctr=""
cleanup() {
  if [ -n "$ctr" ]; then buildah --root "$work/root" --runroot "$work/run" rm "$ctr" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
started=$(date +%s)
echo "making $name from Debian $suite ($packages)..." >&2
# Like the official slim images: merged /usr set up by mmdebstrap's hook (not by the
# usrmerge package, which would pull in perl), no manual pages, documentation or
# translations (the copyright files stay; mmdebstrap keeps these dpkg options in the image,
# so later installs follow them too), no apt lists (mmdebstrap removes them), and apt set
# up as in Debian's own container images to keep no package caches.
cat >"$work/docker-clean" <<'EOF'
// As in Debian's own container images: no package caches left in a layer.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
EOF
mmdebstrap --variant=minbase --include="$packages" --quiet \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook="copy-in $work/docker-clean /etc/apt/apt.conf.d" \
  --customize-hook='rm -f "$1"/var/cache/apt/*.bin' \
  --customize-hook="chroot \"\$1\" dpkg-query -W -f='\${Package} \${Version}\n' >'$work/packages.txt'" \
  "$suite" "$work/rootfs.tar" "$sources" >&2

b() { buildah --root "$work/root" --runroot "$work/run" --storage-driver vfs "$@"; }
ctr="$(b from --quiet scratch)"
b add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
# The official image's environment, minus its own build variables: Debian's python3 is
# /usr/bin/python3 (python-is-python3 adds /usr/bin/python).
b config --env LANG=C.UTF-8 --cmd '["python3"]' \
  --label org.opencontainers.image.title=longtask-python-base \
  --label org.opencontainers.image.description="Debian $suite minbase with Python 3.11, made by hack/base-image.sh" \
  "$ctr"
rm -f "$archive.new"
b commit --quiet --format oci --rm "$ctr" "oci-archive:$archive.new:$name" >/dev/null
ctr=""
mv "$archive.new" "$archive"
mv "$work/packages.txt" "$cache/packages.txt"  # what the image holds, for the curious
stamp_text >"$cache/stamp"
echo "$name: $(du -h "$archive" | cut -f1) archive, made in $(( $(date +%s) - started )) s" >&2
echo "$archive"
