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
# the reference package (torch) in a venv of its own, made once: torch is a large download
ref_venv=${NNN_REF_VENV:-$(dirname "$NNN_VENV")/venv-ref}
if [ ! -x "$ref_venv/bin/python" ] || ! "$ref_venv/bin/python" -c 'import nnn, torch' 2>/dev/null; then
  python3 -m venv "$ref_venv" && "$ref_venv/bin/pip" install -q numpy nnn-retrieval==1.0.1 torch
fi
(cd scripts && OMP_NUM_THREADS=$threads "$ref_venv/bin/python" bench_reference.py "$out")
# the SQL surface on a throw-away cluster (needs `make install`)
. scripts/cluster.sh
trap 'cluster_stop; rm -f "$out"' EXIT
cluster_start
"$NNN_VENV/bin/python" scripts/bench_sql.py "$out"
"$NNN_VENV/bin/python" scripts/bench_changelog.py
"$NNN_VENV/bin/python" scripts/bench_batch_input.py
"$NNN_VENV/bin/python" scripts/bench_score.py
"$NNN_VENV/bin/python" scripts/bench_planner.py
NNN_TUNE_PNG=${NNN_TUNE_PNG:-$(mktemp -d)/tune.png} "$NNN_VENV/bin/python" scripts/tune.py
