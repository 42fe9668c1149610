#!/usr/bin/env bash
# SQL regression tests (pg_regress) and integration tests (pytest) against a throw-away
# PostgreSQL 15 cluster that this script creates, and stops even when a test fails.
# Needs the extension installed (make install) and the Python venv (scripts/venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh
trap cluster_stop EXIT
cluster_start

PG_REGRESS=$(dirname "$(pg_config --pgxs)")/../test/regress/pg_regress
out=$(mktemp -d /tmp/nnn-regress.XXXXXX)
chown postgres "$out"
echo "== pg_regress: $(grep -c '^test:' tests/pg_regress/schedule) files of tests/pg_regress/schedule"
status=0
sudo -u postgres "$PG_REGRESS" --inputdir=tests/pg_regress --outputdir="$out" \
  --schedule=tests/pg_regress/schedule --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname=nnn_regress || status=$?
if [ $status -ne 0 ]; then
  cat "$out/regression.diffs" 2>/dev/null | head -200
  [ -n "${NNN_KEEP_REGRESS:-}" ] && cp -r "$out" "$NNN_KEEP_REGRESS"
  exit $status
fi
rm -rf "$out"

echo "== integration tests"
"${NNN_VENV:?}/bin/python" -m pytest -q tests/integration
