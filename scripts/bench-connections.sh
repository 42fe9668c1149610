#!/usr/bin/env bash
# The many-sessions benchmark (scripts/bench_connections.py) on a throw-away cluster.
# NNN_CONN_ROWS / NNN_CONN_SESSIONS size it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh
trap cluster_stop EXIT
NNN_PG_OPTIONS="${NNN_PG_OPTIONS:-} -c max_connections=100 -c shared_buffers=512MB" cluster_start
"${NNN_VENV:?}/bin/python" scripts/bench_connections.py
