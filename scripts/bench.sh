#!/usr/bin/env bash
# Engine benchmark, then faiss-cpu and numpy on the same shapes in the same run, with ratios,
# then the SQL-level benchmark against the engine numbers of this same run.
# NNN_BENCH_QUICK=1 uses small shapes; NNN_BENCH_THREADS (default 2) sets every side's threads.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${NNN_BENCH_THREADS:-2}
quick=()
[ "${NNN_BENCH_QUICK:-}" = 1 ] && quick=(--quick)
out=$(mktemp)
cargo bench -p nnn-engine --bench engine -- --threads "$threads" "${quick[@]}" | tee "$out"
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "${NNN_VENV:?}/bin/python" scripts/bench_compare.py "$out"
# the SQL surface on a throw-away cluster (needs `make install`)
. scripts/cluster.sh
trap 'cluster_stop; rm -f "$out"' EXIT
cluster_start
"$NNN_VENV/bin/python" scripts/bench_sql.py "$out"
