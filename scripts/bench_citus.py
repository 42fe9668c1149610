"""Bias builds on a Citus cluster against one node, side by side in one run (make bench-citus):
the same rows (NNN_CITUS_ROWS candidates, default 200,000, of d = NNN_CITUS_DIM = 128, against
NNN_CITUS_REF = 20,000 reference rows, k = 128) as a distributed table of 8 shards over two
workers with a reference table, and as local tables of the coordinator. Prints each build's
seconds (best of two), their ratio, whether the biases agree, and what crossed the coordinator
in the distributed build (Citus's intermediate result) next to the bytes of the vectors.
The three nodes share this machine's cores, so the ratio shows the overhead of distribution
more than its speed-up. Asserts nothing (not a test). Needs `make install` and a cluster from
scripts/citus-cluster.sh (PG* variables), as scripts/bench-citus.sh provides.
"""
import os
import pathlib
import re
import sys
import time

import numpy as np
import psycopg

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from copy_vectors import copy_vectors  # noqa: E402

ROWS = int(os.environ.get("NNN_CITUS_ROWS", "200000"))
DIM = int(os.environ.get("NNN_CITUS_DIM", "128"))
REF = int(os.environ.get("NNN_CITUS_REF", "20000"))


def unit(rng, n):
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def best_of_two(db, sql):
    times = []
    for _ in range(2):
        t = time.perf_counter()
        db.execute(sql)
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    rng = np.random.default_rng(7)
    cand, ref = unit(rng, ROWS), unit(rng, REF)
    with psycopg.connect(autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        db.execute("SET nnn.progress = off")
        db.execute("SET nnn.max_memory_mb = 8192")
        for t, r in (("bc", "br"), ("lc", "lr")):
            db.execute(f"DROP TABLE IF EXISTS {t}, {r}")
            db.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, emb real[], nnn_bias real)")
            db.execute(f"CREATE TABLE {r} (emb real[])")
        db.execute("SELECT create_distributed_table('bc', 'id', shard_count => 8)")
        db.execute("SELECT create_reference_table('br')")
        for t, r in (("bc", "br"), ("lc", "lr")):
            copy_vectors(db, t, np.arange(ROWS), cand)
            copy_vectors(db, r, None, ref)
        print(f"## bias build, {ROWS} candidates x {REF} reference rows, d = {DIM}, k = 128")
        local = best_of_two(db, "SELECT nnn.build_bias('lc', 'emb', 'lr', 'emb', k => 128)")
        dist = best_of_two(db, "SELECT nnn.build_bias('bc', 'emb', 'br', 'emb', k => 128)")
        print(f"  one node (local tables on the coordinator)   {local:8.2f} s")
        print(f"  Citus, 8 shards on 2 workers                 {dist:8.2f} s   ({local / dist:.2f}x one node)")
        worst = db.execute("SELECT max(abs(b.nnn_bias - l.nnn_bias)) FROM bc b JOIN lc l USING (id)").fetchone()[0]
        print(f"  largest difference of the two builds' biases {worst:.2e}")
        # what crossed the coordinator: the statement nnn.build_bias runs (see build_distributed
        # in src/api/bias.rs), under EXPLAIN ANALYZE in a rolled-back transaction
        shard = db.execute("SELECT shard_name('br'::regclass, shardid) FROM pg_dist_shard WHERE logicalrelid = 'br'::regclass").fetchone()[0]
        with db.transaction(force_rollback=True):
            plan = "\n".join(r for (r,) in db.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) WITH b AS MATERIALIZED (SELECT id AS key, nnn.shard_bias(tableoid, id, 'emb', 'id', "
                "%s, 'emb', 'nnn', 128, NULL) AS bias FROM bc) UPDATE bc SET nnn_bias = b.bias FROM b WHERE bc.id = b.key",
                (shard,)))
        size = re.search(r"Intermediate Data Size: (\d+) (bytes|kB|MB|GB)", plan)
        sent = re.search(r"Result destination: Send to (\d+) nodes", plan)
        vectors = ROWS * DIM * 4
        if size:
            carried = int(size.group(1)) * {"bytes": 1, "kB": 1024, "MB": 1 << 20, "GB": 1 << 30}[size.group(2)]
            print(f"  through the coordinator: {carried / 1e6:.1f} MB of (id, bias) pairs, sent on to "
                  f"{sent.group(1) if sent else '?'} workers; the vectors are {vectors / 1e6:.1f} MB "
                  f"({vectors / carried:.0f}x more)")
        else:
            print("  (no intermediate result size in the plan)\n" + plan)
        for t, r in (("bc", "br"), ("lc", "lr")):
            db.execute(f"DROP TABLE {t}, {r}")


if __name__ == "__main__":
    main()
