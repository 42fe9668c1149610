#!/usr/bin/env bash
# The k/alpha sweep (scripts/tune.py) on a throw-away cluster; writes docs/tune-wordnet-dev.png.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh
trap cluster_stop EXIT
cluster_start
"${NNN_VENV:?}/bin/python" scripts/tune.py
