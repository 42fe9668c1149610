#!/usr/bin/env bash
# Installs pgvector 0.8 or later into the PostgreSQL of $PG_CONFIG when it is missing, as root:
# Debian's package postgresql-<major>-pgvector when the archive has 0.8 or later, else the
# release source ../shared/deps/pgvector-0.8.6.tar.gz (PostgreSQL licence), built with
# `make && make install` once (about half a minute). Skipped when 0.8+ is already installed.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
deps=${NNN_DEPS:-$(cd "$(dirname "$0")/../.." && pwd)/shared/deps}
control="$("$PG_CONFIG" --sharedir)/extension/vector.control"

version_ok() { # "0.8.6" -> true when >= 0.8
  local major minor
  IFS=. read -r major minor _ <<<"$1"
  [ "${major:-0}" -gt 0 ] || [ "${minor:-0}" -ge 8 ]
}

if [ -f "$control" ]; then
  have=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$control")
  if version_ok "$have" && [ -f "$("$PG_CONFIG" --pkglibdir)/vector.so" ]; then
    exit 0
  fi
fi

major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
pkg=postgresql-$major-pgvector
candidate=$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] && version_ok "${candidate#*:}"; then
  echo "pgvector: apt-get install $pkg ($candidate)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"
  exit 0
fi

tarball="$deps/pgvector-0.8.6.tar.gz"
if [ ! -f "$tarball" ]; then
  echo "pgvector: not installed, no Debian package of 0.8+, and no source at $tarball" >&2
  echo "pgvector: set NNN_DEPS to the folder holding pgvector-0.8.6.tar.gz" >&2
  exit 1
fi
echo "pgvector: building 0.8.6 from $tarball"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
make -s -C "$work/pgvector-0.8.6" PG_CONFIG="$PG_CONFIG" >/dev/null
make -s -C "$work/pgvector-0.8.6" PG_CONFIG="$PG_CONFIG" install >/dev/null
echo "pgvector: installed $(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$control")"
