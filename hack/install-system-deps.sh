#!/usr/bin/env bash
# Installs the system packages the tests and the demo need, from Debian's packages, where
# they are missing (as root; otherwise it prints the apt-get line to run):
#   - the PostgreSQL 15 server binaries (postgresql-15);
#   - the image tools of hack/base-image.sh, hack/build-images.sh and
#     tests/deploy/test_built_images.py: buildah, podman, runc (crun, podman's default,
#     refuses hybrid cgroup set-ups; the tests pass --runtime runc), mmdebstrap, and what
#     podman recommends beside them (uidmap, fuse-overlayfs, slirp4netns,
#     containernetworking-plugins);
#   - the headless browser of tests/console: chromium and chromium-driver (the WebDriver
#     server selenium drives; /usr/bin/chromium and /usr/bin/chromedriver).
set -euo pipefail

have_pg() {
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/16/bin /usr/lib/postgresql/17/bin; do
    [ -x "$d/pg_ctl" ] && return 0
  done
  command -v pg_ctl >/dev/null 2>&1
}

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

missing=()
have_pg || missing+=(postgresql-15)
for pkg in buildah podman runc mmdebstrap uidmap fuse-overlayfs slirp4netns \
           containernetworking-plugins chromium chromium-driver; do
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
# The PostgreSQL package's own cluster is not used: tests and the demo start throwaway
# clusters.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
