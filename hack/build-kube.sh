#!/usr/bin/env bash
# Builds the local Kubernetes cluster used by the tests and the demo: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and the kubelet, from the Go modules pinned in
# hack/kube/go.mod (k8s.io/kubernetes at one release; etcd at the version it pins).
#
# The binaries go to a cache outside git, reused while its stamp matches the pins:
#   ${LONGTASK_KUBE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/longtask/kube-<version>/bin}
# The Go build cache for it (about 3.6 GB) lives beside, in …/longtask/go-build, and is
# removed after a successful build unless LONGTASK_KUBE_KEEP_GOCACHE=1 (a failed build keeps
# it, so that a retry starts where it stopped).
#
#   hack/build-kube.sh               build when the cache is missing or stale
#   hack/build-kube.sh --force       rebuild
#   hack/build-kube.sh --print-bin-dir
#
# A cold build takes about 20 minutes on 2 cores (see hack/KUBE.md); concurrent runs wait
# for each other on a lock file instead of building twice.
set -euo pipefail
# Everything runs inside main, which bash reads whole before running: a checkout that changes
# this file during a build cannot make the running script read half-changed lines.
main() {
root="$(cd "$(dirname "$0")/.." && pwd)"
moddir="$root/hack/kube"
export PATH="$PATH:/usr/local/go/bin"

pinned() { awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$moddir/go.mod"; }
kube_version="$(pinned k8s.io/kubernetes)"
etcd_version="$(pinned go.etcd.io/etcd/server/v3)"
if [ -z "$kube_version" ] || [ -z "$etcd_version" ]; then
  echo "build-kube: cannot read the pinned versions from $moddir/go.mod" >&2
  exit 1
fi

export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/longtask"
bin_dir="${LONGTASK_KUBE_BIN_DIR:-$cache_root/kube-$kube_version/bin}"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet)

force=0
case "${1:-}" in
  --print-bin-dir) echo "$bin_dir"; exit 0 ;;
  --force) force=1 ;;
  "") ;;
  *) echo "usage: $0 [--force|--print-bin-dir]" >&2; exit 2 ;;
esac

if ! command -v go >/dev/null 2>&1; then
  echo "build-kube: the Go toolchain is needed (go $(awk '$1 == "go" {print $2}' "$moddir/go.mod") or newer)" >&2
  exit 1
fi

# What the stamp records: a change to any of it (new pin, new Go) means a rebuild.
stamp_text="kubernetes=$kube_version etcd=$etcd_version $(go env GOVERSION) gosum=$(sha256sum "$moddir/go.sum" | cut -c1-16)"
stamp="$bin_dir/.stamp"

up_to_date() {
  [ "$force" = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ] || return 1
  for b in "${binaries[@]}"; do [ -x "$bin_dir/$b" ] || return 1; done
}

if up_to_date; then
  echo "build-kube: $bin_dir is up to date ($stamp_text)"
  exit 0
fi

mkdir -p "$bin_dir"
exec 9>"$bin_dir/.lock"
if ! flock -n 9; then
  echo "build-kube: another build holds $bin_dir/.lock; waiting for it"
  flock 9
fi
if up_to_date; then  # built by the run we waited for
  echo "build-kube: $bin_dir is up to date ($stamp_text)"
  exit 0
fi
force=0

export GOCACHE="${LONGTASK_KUBE_GOCACHE:-$cache_root/go-build}"
export CGO_ENABLED=0
# -trimpath and -s -w keep the binaries small and independent of this checkout's path;
# the -X flags give the servers their real version (kubectl version, discovery).
export GOFLAGS="-trimpath -mod=readonly -buildvcs=false"
minor="${kube_version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

staging="$(mktemp -d "$bin_dir/../build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
started=$(date +%s)
echo "build-kube: building etcd $etcd_version and Kubernetes $kube_version into $bin_dir"
echo "build-kube: a cold build takes about 20 minutes on 2 cores; the Go build cache is $GOCACHE"
cd "$moddir"
go mod download
go build -ldflags "$ldflags" -o "$staging/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet
go build -ldflags "-s -w" -o "$staging/etcd" go.etcd.io/etcd/server/v3
for b in "${binaries[@]}"; do mv -f "$staging/$b" "$bin_dir/$b"; done
echo "$stamp_text" > "$stamp"
if [ "${LONGTASK_KUBE_KEEP_GOCACHE:-0}" != 1 ] && [ -z "${LONGTASK_KUBE_GOCACHE:-}" ]; then
  rm -rf "$GOCACHE"
fi
elapsed=$(( $(date +%s) - started ))
echo "build-kube: done in $((elapsed / 60))m$((elapsed % 60))s: $(du -sh "$bin_dir" | cut -f1) of binaries in $bin_dir"
}

main "$@"
