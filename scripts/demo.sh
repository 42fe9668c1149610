#!/usr/bin/env bash
# The demo on a throw-away local PostgreSQL 15 cluster, stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh
trap cluster_stop EXIT
cluster_start
"${NNN_VENV:?}/bin/python" examples/demo.py
