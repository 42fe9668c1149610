"""How a client sends a batch of queries (make bench runs it): 1,000 queries of d = 384 against
NNN_BATCH_ROWS (default 100,000) cached candidates, from psycopg end to end, as a list of
float lists (text, cast to real[][]) and as packed little-endian float32 (bytea, with the
dimension), next to the server's own execution time of the call. Prints ratios; asserts
nothing (not a test). Needs `make install` and a cluster (PG* variables).
"""
import os
import pathlib
import statistics
import sys
import time

import numpy as np
import psycopg

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from copy_vectors import copy_vectors  # noqa: E402

ROWS = int(os.environ.get("NNN_BATCH_ROWS", "100000"))
DIM, QUERIES = 384, 1000


def main():
    rng = np.random.default_rng(5)
    with psycopg.connect(autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        db.execute("SET nnn.progress = off")
        db.execute("DROP TABLE IF EXISTS bi, bi_ref CASCADE")
        db.execute("CREATE TABLE bi (id bigint PRIMARY KEY, emb real[])")
        db.execute("CREATE TABLE bi_ref (emb real[])")
        copy_vectors(db, "bi", np.arange(ROWS), rng.normal(size=(ROWS, DIM)).astype(np.float32))
        copy_vectors(db, "bi_ref", None, rng.normal(size=(5000, DIM)).astype(np.float32))
        db.execute("SELECT nnn.create_index('bi', 'bi', 'id', 'emb', 'bi_ref', 'emb', k => 32)")
        queries = rng.normal(size=(QUERIES, DIM)).astype(np.float32)
        db.execute("SELECT count(*) FROM nnn_search('bi', %s::real[], 10)", (queries[0].tolist(),))  # fill the cache
        text_sql = "SELECT * FROM nnn_search_batch('bi', %s::real[], 10)"
        packed_sql = "SELECT * FROM nnn_search_batch('bi', %s, %s, 10)"

        def client(sql, params):
            t = time.perf_counter()
            db.execute(sql, params()).fetchall()
            return time.perf_counter() - t

        text = statistics.median(client(text_sql, lambda: (queries.tolist(),)) for _ in range(3))
        packed = statistics.median(client(packed_sql, lambda: (queries.astype("<f4").tobytes(), DIM)) for _ in range(3))
        server = statistics.median(
            db.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + packed_sql,
                       (queries.astype("<f4").tobytes(), DIM)).fetchone()[0][0]["Execution Time"] / 1000
            for _ in range(3))
        print(f"## {QUERIES} queries x {DIM} against {ROWS} cached candidates, k = 10, from psycopg")
        print(f"  server execution time of the call        {server:7.3f} s")
        print(f"  end to end, float lists (text real[][])   {text:7.3f} s   {text / server:5.2f}x the server's")
        print(f"  end to end, packed float32 (bytea, dim)   {packed:7.3f} s   {packed / server:5.2f}x the server's")
        db.execute("SELECT nnn.drop_index('bi')")
        db.execute("DROP TABLE bi, bi_ref")


if __name__ == "__main__":
    main()
