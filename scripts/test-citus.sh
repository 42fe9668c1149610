#!/usr/bin/env bash
# The Citus tests (tests/citus) against a throw-away Citus 13 cluster of a coordinator and two
# workers that this script starts and stops even when a test fails. Needs Citus
# (scripts/citus.sh), the extension installed (make install) and the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/citus-cluster.sh
trap citus_stop EXIT
citus_start nnn_citus
echo "== Citus tests"
"${NNN_VENV:?}/bin/python" -m pytest -q tests/citus
