#!/usr/bin/env bash
# The Citus benchmark (scripts/bench_citus.py) on a throw-away Citus cluster of a coordinator
# and two workers. NNN_CITUS_ROWS / NNN_CITUS_DIM / NNN_CITUS_REF size the data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/citus.sh
. scripts/citus-cluster.sh
trap citus_stop EXIT
citus_start nnn_bench
"${NNN_VENV:?}/bin/python" scripts/bench_citus.py
