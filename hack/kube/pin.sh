#!/usr/bin/env bash
# Pins hack/kube/go.mod to one Kubernetes release: `hack/kube/pin.sh v1.37.2`.
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at
# v0.0.0 and points them at ./staging with replace lines, which Go ignores in a dependency.
# The same code is published as k8s.io/<name> v0.<minor>.<patch>, so this writes one
# replace line per staging module, declares the five server commands as tools, and lets
# `go mod tidy` fill in go.sum. The etcd server is taken at the version Kubernetes pins.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/usr/local/go/bin:$PATH"
version="${1:?usage: pin.sh vMAJOR.MINOR.PATCH}"
staging_version="v0.${version#v1.}"

modfile="$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
staging="$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$modfile")"
etcd="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$modfile")"
goversion="$(awk '$1 == "go" {print $2; exit}' "$modfile")"

{
  echo "// Builds the Kubernetes binaries of the local cluster for the tests; see hack/build-kube.sh."
  echo "module longtask/hack/kube"
  echo
  echo "go ${goversion}"
  echo
  echo "tool ("
  echo "	go.etcd.io/etcd/server/v3"
  echo "	k8s.io/kubernetes/cmd/kube-apiserver"
  echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
  echo "	k8s.io/kubernetes/cmd/kube-scheduler"
  echo "	k8s.io/kubernetes/cmd/kubelet"
  echo ")"
  echo
  echo "require ("
  echo "	go.etcd.io/etcd/server/v3 ${etcd}"
  echo "	k8s.io/kubernetes ${version}"
  echo ")"
  echo
  echo "replace ("
  for module in $staging; do
    echo "	${module} => ${module} ${staging_version}"
  done
  echo ")"
} > go.mod
rm -f go.sum
go mod tidy
echo "pinned k8s.io/kubernetes ${version} (staging ${staging_version}), etcd ${etcd}"
