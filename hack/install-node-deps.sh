#!/usr/bin/env bash
# Installs what the local cluster's real node needs, from Debian's packages, where missing
# (as root; otherwise it prints the apt-get line to run):
#   - containerd (its CRI plugin is the kubelet's runtime; ctr imports the images) and runc;
#   - containernetworking-plugins (the CRI plugin wants a CNI network configured) and
#     iptables (the kubelet makes its canary chains);
#   - gcc and libc6-dev, to build the sandbox's pause program (hack/pause/pause.c) here,
#     statically, instead of pulling a pause image.
# The kubelet and kube-scheduler themselves are built by hack/build-kube.sh (make kube).
set -euo pipefail

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

missing=()
for pkg in containerd runc containernetworking-plugins iptables iproute2 gcc libc6-dev; do
  installed "$pkg" || missing+=("$pkg")
done
[ ${#missing[@]} -gt 0 ] || exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages; run as root:" \
       "apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]}..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package's own containerd service is not started (no systemd here, and the node starts
# its own containerd with a private configuration, socket and state).
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
