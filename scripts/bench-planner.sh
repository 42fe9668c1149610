#!/usr/bin/env bash
# The planner benchmark (scripts/bench_planner.py) alone on a throw-away cluster.
# NNN_PLANNER_ROWS / NNN_PLANNER_DIM / NNN_PLANNER_QUERIES size the clustered set.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh
trap cluster_stop EXIT
NNN_PG_OPTIONS="${NNN_PG_OPTIONS:-} -c shared_buffers=2GB -c max_wal_size=8GB" cluster_start
"${NNN_VENV:?}/bin/python" scripts/bench_planner.py
