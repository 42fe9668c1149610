"""Per-row cost of nnn_score against pgvector's <#> (make bench runs it): 100,000 rows of
d = 384 with an augmented column; server execution times (best of 3) of a full scan computing
max(nnn_score(emb, q, nnn_bias, 0.75)) and max(nnn_augmented <#> [q, -0.75]), less a plain scan
of the same rows; microseconds per row and their ratio. Asserts nothing (not a test). Needs
`make install`, pgvector, and a cluster (PG* variables).
"""
import pathlib
import sys

import numpy as np
import psycopg

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from copy_vectors import copy_vectors  # noqa: E402

ROWS, DIM = 100_000, 384


def main():
    rng = np.random.default_rng(1)
    with psycopg.connect(autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        db.execute("SET nnn.progress = off")
        db.execute("DROP TABLE IF EXISTS sc, sc_ref CASCADE")
        db.execute("CREATE TABLE sc (id bigint PRIMARY KEY, emb real[])")
        db.execute("CREATE TABLE sc_ref (emb real[])")
        copy_vectors(db, "sc", np.arange(ROWS), rng.normal(size=(ROWS, DIM)).astype(np.float32))
        copy_vectors(db, "sc_ref", None, rng.normal(size=(500, DIM)).astype(np.float32))
        db.execute("SELECT nnn.create_index('sc', 'sc', 'id', 'emb', 'sc_ref', 'emb', k => 8, augmented => 'vector')")
        db.execute("VACUUM ANALYZE sc")
        q = rng.normal(size=DIM).astype(np.float32)

        def server(sql, params=None):
            return min(db.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, params).fetchone()[0][0]["Execution Time"]
                       for _ in range(3))

        scan = server("SELECT count(*) FROM sc WHERE emb IS NOT NULL AND nnn_bias IS NOT NULL")
        score = server("SELECT max(nnn_score(emb, %s::real[], nnn_bias, 0.75)) FROM sc", (q.tolist(),))
        augmented = "[" + ",".join(f"{x:.7g}" for x in q) + ",-0.75]"
        inner = server("SELECT max(nnn_augmented <#> %s::vector) FROM sc", (augmented,))
        per = lambda ms: (ms - scan) * 1000 / ROWS  # noqa: E731
        print(f"## per-row scoring over {ROWS} x {DIM} (server time less a {scan:.0f} ms scan)")
        print(f"  nnn_score(emb, q, nnn_bias, 0.75)        {per(score):6.2f} us/row")
        print(f"  pgvector nnn_augmented <#> [q, -0.75]    {per(inner):6.2f} us/row   nnn_score is {per(score) / per(inner):.0f}x")
        db.execute("SELECT nnn.drop_index('sc')")
        db.execute("DROP TABLE sc, sc_ref")


if __name__ == "__main__":
    main()
