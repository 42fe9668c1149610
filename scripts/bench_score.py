"""Per-row cost of nnn_score against pgvector's <#> (make bench runs it). 50,000 rows of
d = 384 (small enough to stay in shared_buffers) with an nnn index and its augmented column.
Server execution times, best of 15 interleaved runs, of a full scan computing
max(nnn_score(emb, q, nnn_bias, 0.75)) or max(nnn_augmented <#> [q, -0.75]), less a plain scan
of the same table: microseconds per row and their ratio.

Each side is measured on a table where the column it reads is stored in the row: in the
indexed table PostgreSQL moves `emb` out of line (TOAST: the row holds two 1.5 KB vectors),
so `nnn_score` there also pays a TOAST fetch per row, printed on its own line; a copy of the
table without the augmented column keeps `emb` in the row. Asserts nothing (not a test).
Needs `make install`, pgvector, and a cluster (PG* variables).
"""
import pathlib
import sys

import numpy as np
import psycopg

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from copy_vectors import copy_vectors  # noqa: E402

ROWS, DIM, RUNS = 50_000, 384, 15


def main():
    rng = np.random.default_rng(1)
    with psycopg.connect(autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        db.execute("SET nnn.progress = off")
        db.execute("DROP TABLE IF EXISTS sc, sc_ref, sc_inline CASCADE")
        db.execute("CREATE TABLE sc (id bigint PRIMARY KEY, emb real[])")
        db.execute("CREATE TABLE sc_ref (emb real[])")
        copy_vectors(db, "sc", np.arange(ROWS), rng.normal(size=(ROWS, DIM)).astype(np.float32))
        copy_vectors(db, "sc_ref", None, rng.normal(size=(500, DIM)).astype(np.float32))
        db.execute("SELECT nnn.create_index('sc', 'sc', 'id', 'emb', 'sc_ref', 'emb', k => 8, augmented => 'vector')")
        db.execute("CREATE TABLE sc_inline AS SELECT id, emb, nnn_bias FROM sc")
        for t in ("sc", "sc_inline"):
            db.execute(f"VACUUM ANALYZE {t}")
        q = rng.normal(size=DIM).astype(np.float32)
        augmented = "[" + ",".join(f"{x:.7g}" for x in q) + ",-0.75]"
        plans = {
            "scan": ("SELECT count(*) FROM sc WHERE nnn_augmented IS NOT NULL", None),
            "inner": ("SELECT max(nnn_augmented <#> %s::vector) FROM sc", (augmented,)),
            "scan_inline": ("SELECT count(*) FROM sc_inline WHERE emb IS NOT NULL", None),
            "score": ("SELECT max(nnn_score(emb, %s::real[], nnn_bias, 0.75)) FROM sc_inline", (q.tolist(),)),
            "score_toasted": ("SELECT max(nnn_score(emb, %s::real[], nnn_bias, 0.75)) FROM sc", (q.tolist(),)),
        }
        best = dict.fromkeys(plans, float("inf"))
        for _ in range(RUNS):
            for name, (sql, params) in plans.items():
                plan = db.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, params).fetchone()[0][0]
                best[name] = min(best[name], plan["Execution Time"])
        per = lambda ms, scan: (ms - scan) * 1000 / ROWS  # noqa: E731
        score, inner = per(best["score"], best["scan_inline"]), per(best["inner"], best["scan"])
        print(f"## per-row scoring over {ROWS} x {DIM} (server time less a plain scan, best of {RUNS})")
        print(f"  nnn_score(emb, q, nnn_bias, 0.75), emb in the row   {score:6.3f} us/row   {score / inner:.2f}x pgvector")
        print(f"  pgvector nnn_augmented <#> [q, -0.75], in the row    {inner:6.3f} us/row")
        print(f"  nnn_score where emb is TOASTed (beside the column)   {per(best['score_toasted'], best['scan']):6.3f} us/row")
        db.execute("SELECT nnn.drop_index('sc')")
        db.execute("DROP TABLE sc, sc_ref, sc_inline")


if __name__ == "__main__":
    main()
