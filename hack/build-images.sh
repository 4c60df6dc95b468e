#!/usr/bin/env bash
# Builds the two images, operator and runner, from Dockerfile.operator and Dockerfile.runner
# with buildah, on the Debian-made base of hack/base-image.sh, and writes each as a
# docker-archive a kubelet's runtime can load (`ctr -n k8s.io images import FILE`,
# `podman load -i FILE`). Prints each image's size and build time.
#
#   hack/build-images.sh [options] [operator|runner ...]     (both when none is named)
#
#   --root DIR       buildah's image storage (default $LONGTASK_IMAGE_ROOT, else
#                    ${XDG_CACHE_HOME:-$HOME/.cache}/longtask/images/storage): private to
#                    the project, kept for the layer cache
#   --runroot DIR    its run-time state (default $LONGTASK_IMAGE_RUNROOT, else --root's
#                    sibling run/)
#   --storage-driver D  overlay (default, or $LONGTASK_IMAGE_STORAGE_DRIVER), or vfs where
#                    the storage folder cannot hold overlay mounts
#   --out DIR        where the archives go (default $LONGTASK_IMAGE_OUT, else build/images);
#                    --no-archive writes none
#   --repository R   tag the images R/operator:VERSION and R/runner:VERSION (default
#                    localhost/longtask), e.g. a registry to `buildah push` them to
#   --version V      the tag and the images' version label (default: pyproject.toml's)
#
# Output, one line per image (tests read it):
#   image runner localhost/longtask/runner:0.1.0 size 123 MB built in 56.7 s archive PATH
#   (the size is buildah's: the image's layers, uncompressed)
#
# Needs root, buildah, mmdebstrap and runc (hack/install-system-deps.sh). Apt and pip in the
# build go through this machine's TLS-intercepting proxy, if any: the CA bundle
# ($LONGTASK_BUILD_CA, else $SSL_CERT_FILE, else /etc/ssl/certs/ca-certificates.crt) is
# mounted read-only over the image's own bundle for the RUN steps only, and is not left in
# the images (tests/deploy/test_built_images.py checks). That path is apt's, OpenSSL's and
# pip's: Debian's pip (the base's venv pip) takes its certificates from there, so no
# PIP_CERT is needed. Only a file that exists in the base can be mounted so: buildah leaves
# an empty file behind at a mount point it had to create.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/longtask"
root="${LONGTASK_IMAGE_ROOT:-$cache/images/storage}"
runroot="${LONGTASK_IMAGE_RUNROOT:-}"
driver="${LONGTASK_IMAGE_STORAGE_DRIVER:-overlay}"
out="${LONGTASK_IMAGE_OUT:-$repo/build/images}"
repository=localhost/longtask
version=""
archive=1
kinds=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --runroot) runroot="$2"; shift 2 ;;
    --storage-driver) driver="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-archive) archive=0; shift ;;
    --repository) repository="${2%/}"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    operator|runner) kinds+=("$1"); shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
[ ${#kinds[@]} -gt 0 ] || kinds=(runner operator)
runroot="${runroot:-$(dirname "$root")/run}"
if [ -z "$version" ]; then
  version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/pyproject.toml" | head -1)"
fi
revision="$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "building images needs root (buildah with chroot isolation)" >&2; exit 1
fi
for tool in buildah runc; do
  command -v "$tool" >/dev/null || {
    echo "$tool is missing: run hack/install-system-deps.sh as root" >&2; exit 1; }
done

ca="${LONGTASK_BUILD_CA:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
base_name=localhost/longtask/python-base:3.11-bookworm
mkdir -p "$root" "$runroot"
b() { buildah --root "$root" --runroot "$runroot" --storage-driver "$driver" "$@"; }

# One build at a time in a storage (the layer cache is shared).
exec 9>"$root/../.build.lock"
flock 9

base_archive="$("$repo/hack/base-image.sh")"
# The archive names its image (localhost/longtask/python-base:3.11-bookworm); pulling it
# again is cheap when the image is in the storage already, and keeps its image ID (the
# layer cache's key) the same across storages.
b pull --quiet "oci-archive:$base_archive" >/dev/null
b inspect --type image "$base_name" >/dev/null

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mounts=()
if [ -r "$ca" ]; then
  mounts=(--volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro")
fi
[ "$archive" = 0 ] || mkdir -p "$out"
# Explicit limits for the RUN steps, not whatever the host's are: 65536 open files and
# 32768 processes (buildah's own default, which it sets on itself), or this shell's hard
# limit when lower (raising one past it needs CAP_SYS_RESOURCE, which some sandboxes
# withhold).
limit() { local hard; hard="$(ulimit -H "$1")"
  if [ "$hard" = unlimited ] || [ "$hard" -gt "$2" ]; then echo "$2"; else echo "$hard"; fi; }
nofile="$(limit -n 65536)"
nproc="$(limit -u 32768)"

for kind in "${kinds[@]}"; do
  tag="$repository/$kind:$version"
  echo "building $tag from Dockerfile.$kind..." >&2
  started=$(date +%s%N)
  # --format docker keeps HEALTHCHECK (OCI image configs have none); --layers caches each
  # step in the storage; chroot isolation needs no daemon, no cgroup set-up and no network
  # namespace (RUN steps use the host's network, where the registries are reachable).
  b bud --quiet --isolation chroot --format docker --layers --pull=false \
    --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
    "${mounts[@]}" \
    --build-arg "PYTHON_IMAGE=$base_name" --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" \
    --file "$repo/Dockerfile.$kind" --tag "$tag" "$repo" >"$tmp/$kind.id"
  ms=$(( ($(date +%s%N) - started) / 1000000 ))
  size="$(b images --format '{{.Size}}' "$tag" | head -1)"
  where=none
  if [ "$archive" = 1 ]; then
    where="$out/$kind.tar"
    rm -f "$where.new"
    b push --quiet "$tag" "docker-archive:$where.new:$tag" >/dev/null
    mv "$where.new" "$where"
  fi
  printf 'image %s %s size %s built in %d.%d s archive %s\n' "$kind" "$tag" "$size" \
    $((ms / 1000)) $((ms % 1000 / 100)) "$where"
done
