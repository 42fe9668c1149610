#!/usr/bin/env bash
# Installs Citus 13.2.2 into the PostgreSQL of $PG_CONFIG when it is missing, as root, for the
# Citus tests: the release source ../shared/deps/citus-13.2.2.tar.gz (AGPL-3.0) with the local
# patch citus-13.2.2-pg15-minor.patch (PostgreSQL 15.20's headers declare a function Citus
# defines itself), its build dependencies from apt, then `./configure && make && make install`
# once (several minutes on 2 cores). Skipped when Citus 13.2.x is installed.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
deps=${NNN_DEPS:-$(cd "$(dirname "$0")/../.." && pwd)/shared/deps}
control="$("$PG_CONFIG" --sharedir)/extension/citus.control"
if [ -f "$control" ] && [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ] \
  && grep -q "^default_version = '13\.2-" "$control"; then
  exit 0
fi
tarball="$deps/citus-13.2.2.tar.gz"
patchfile="$deps/citus-13.2.2-pg15-minor.patch"
if [ ! -f "$tarball" ] || [ ! -f "$patchfile" ]; then
  echo "citus: not installed, and no source at $tarball (with its patch)" >&2
  echo "citus: set NNN_DEPS to the folder holding citus-13.2.2.tar.gz and its patch" >&2
  exit 1
fi
echo "citus: building 13.2.2 from $tarball"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libzstd-dev liblz4-dev libcurl4-openssl-dev libkrb5-dev >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
(cd "$work/citus-13.2.2" && patch -p1 -s <"$patchfile" \
  && ./configure -q PG_CONFIG="$PG_CONFIG" >/dev/null \
  && make -s -j"$(nproc)" >/dev/null 2>&1 && make -s install >/dev/null)
echo "citus: installed $(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$control")"
