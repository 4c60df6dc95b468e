#!/usr/bin/env bash
# Installs the system packages the tests and the demo need, where they are missing:
# the PostgreSQL 15 server binaries (Debian package postgresql-15).
set -euo pipefail

have_pg() {
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/16/bin /usr/lib/postgresql/17/bin; do
    [ -x "$d/pg_ctl" ] && return 0
  done
  command -v pg_ctl >/dev/null 2>&1
}

if ! have_pg; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL server binaries are missing; run as root: apt-get install -y postgresql-15" >&2
    exit 1
  fi
  echo "installing the PostgreSQL server (postgresql-15)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's own cluster is not used: tests and the demo start throwaway clusters.
  apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
fi
