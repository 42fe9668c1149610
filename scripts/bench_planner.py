"""NNN inside the planner, side by side in one run (make bench-planner; make bench runs it too):
on wordnet-dev (2,000 x 384) and on clustered rows (NNN_PLANNER_ROWS, default 1,000,000, of
NNN_PLANNER_DIM = 32 dimensions), for each search path its recall@10 against the exact NNN top
10, the median single-query server time (EXPLAIN ANALYZE) and its build time, unfiltered and
with a 10 % filter:
  nnn_search exact (cached)  |  pgvector exact ORDER BY  |  pgvector HNSW on the augmented
  column  |  nnn's Faiss HNSW32 (nnn.set_ann; it cannot filter).
Also the augmented column's cost: bytes per row, 1,000-row INSERT and nnn.refresh with and
without it; and a one-row INSERT statement with and without the nnn index (its trigger reads
the whole reference set). Prints a table; asserts nothing (not a test). Needs `make install` and a cluster
(PG* variables), as scripts/bench.sh provides.
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

ROWS = int(os.environ.get("NNN_PLANNER_ROWS", "1000000"))
DIM = int(os.environ.get("NNN_PLANNER_DIM", "32"))
QUERIES = int(os.environ.get("NNN_PLANNER_QUERIES", "50"))
EF = (40, 100)  # hnsw.ef_search values measured


def dev(name):
    return np.fromfile(ROOT / "data" / "wordnet-dev" / name, dtype="<f2").astype(np.float32).reshape(-1, 384)


def clustered(n, d, rng, centers):
    rows = centers[rng.integers(0, len(centers), n)] + rng.normal(0, 0.35, (n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def vec(q):
    return "[" + ",".join(f"{x:.7g}" for x in q) + "]"


def server(db, sql, params):
    plan = db.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, params).fetchone()[0]
    return plan[0]["Execution Time"] / 1000.0


def seconds(db, sql, params=None):
    t = time.perf_counter()
    db.execute(sql, params)
    return time.perf_counter() - t


def load(db, name, cand, ref):
    db.execute(f"DROP TABLE IF EXISTS {name}, {name}_ref CASCADE")
    db.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, emb real[], cat int)")
    db.execute(f"CREATE TABLE {name}_ref (emb real[])")
    copy_vectors(db, name, np.arange(len(cand)), cand)
    copy_vectors(db, f"{name}_ref", None, ref)
    db.execute(f"UPDATE {name} SET cat = id % 10")
    db.execute(f"VACUUM ANALYZE {name}")


def single_row_inserts(db, table, start, count=21):
    """Median seconds of `count` one-row INSERT statements into `table` (copies of its first
    rows under new ids from `start`), each its own statement as an ORM writes them; removed after."""
    sql = f"INSERT INTO {table} (id, emb, cat) SELECT id + {start}, emb, cat FROM {table} WHERE id = %s"
    times = [seconds(db, sql, (i,)) for i in range(count)]
    db.execute(f"DELETE FROM {table} WHERE id >= {start}")
    return statistics.median(times)


def measure(db, name, queries, label):
    """Recall@10 and median server seconds of each path, unfiltered and with cat = 3."""
    exact_sql = f"SELECT id FROM nnn_search('{name}', %s::real[], 10)"
    among_sql = f"SELECT id FROM nnn_search('{name}', %s::real[], 10, (SELECT array_agg(id) FROM {name} WHERE cat = 3))"
    order_sql = f"SELECT id FROM {name} {{where}} ORDER BY nnn_augmented <#> nnn.query_vector(%s::vector) LIMIT 10"
    rows = []
    db.execute("SET nnn.ann = off")
    truth = [[i for (i,) in db.execute(exact_sql, (q.tolist(),))] for q in queries]
    truth10 = [[i for (i,) in db.execute(among_sql, (q.tolist(),))] for q in queries]

    def run(path, sql, args, want, setup=()):
        for s in setup:
            db.execute(s)
        got = [[i for (i,) in db.execute(sql, a)] for a in args]
        secs = statistics.median(server(db, sql, a) for a in args)
        recall = sum(len(set(g) & set(w)) for g, w in zip(got, want)) / sum(len(w) for w in want)
        rows.append((label, path, recall, secs))

    qs = [(q.tolist(),) for q in queries]
    vs = [(vec(q),) for q in queries]
    run("nnn_search exact", exact_sql, qs, truth)
    run("  10 % filter: nnn_search among ids", among_sql, qs, truth10)
    db.execute("SET enable_indexscan = off")
    run("pgvector exact ORDER BY", order_sql.format(where=""), vs, truth)
    run("  10 % filter", order_sql.format(where="WHERE cat = 3"), vs, truth10)
    db.execute("RESET enable_indexscan; SET enable_seqscan = off")
    for ef in EF:
        run(f"pgvector HNSW, ef_search {ef}", order_sql.format(where=""), vs, truth, [f"SET hnsw.ef_search = {ef}"])
        run("  10 % filter, iterative relaxed_order", order_sql.format(where="WHERE cat = 3"), vs, truth10,
            ["SET hnsw.iterative_scan = relaxed_order"])
        db.execute("RESET hnsw.iterative_scan")
    db.execute("RESET enable_seqscan; RESET hnsw.ef_search; SET nnn.ann = on")
    run("nnn Faiss HNSW32, nnn.ef_search 64", exact_sql, qs, truth)
    return rows


def bench(db, name, cand, ref, queries):
    n, d = cand.shape
    print(f"\n## {name}: {n} candidates x {d}, {len(ref)} reference rows, {len(queries)} queries", flush=True)
    load(db, name, cand, ref)
    build = {"nnn bias (nnn.create_index)": seconds(db, f"SELECT nnn.create_index('{name}', '{name}', 'id', 'emb', '{name}_ref', 'emb')")}
    refresh_plain = seconds(db, f"SELECT nnn.refresh('{name}')")
    insert_sql = f"INSERT INTO {name} (id, emb, cat) SELECT id + {10 * n}, emb, cat FROM {name} WHERE id < 1000"
    insert_plain = seconds(db, insert_sql)
    db.execute(f"DELETE FROM {name} WHERE id >= {10 * n}")
    db.execute(f"CREATE TABLE {name}_bare AS SELECT id, emb, cat FROM {name}")
    db.execute(f"ALTER TABLE {name}_bare ADD PRIMARY KEY (id)")
    one_row = (single_row_inserts(db, f"{name}_bare", 10 * n), single_row_inserts(db, name, 10 * n))
    db.execute(f"DROP TABLE {name}_bare")
    db.execute(f"VACUUM FULL {name}")
    size1 = db.execute(f"SELECT pg_table_size('{name}')").fetchone()[0]
    build["augmented column (ALTER TABLE)"] = seconds(db, f"SELECT nnn.set_augmented('{name}', 'vector')")
    db.execute(f"VACUUM FULL {name}")
    db.execute(f"ANALYZE {name}")
    size2 = db.execute(f"SELECT pg_table_size('{name}')").fetchone()[0]
    col = db.execute(f"SELECT avg(pg_column_size(emb)), avg(pg_column_size(nnn_augmented)) FROM {name}").fetchone()
    refresh_aug = seconds(db, f"SELECT nnn.refresh('{name}')")
    insert_aug = seconds(db, insert_sql)
    db.execute(f"DELETE FROM {name} WHERE id >= {10 * n}")
    db.execute("SET maintenance_work_mem = '2GB'")
    build["pgvector HNSW (m 16, ef_construction 64)"] = seconds(
        db, f"CREATE INDEX {name}_hnsw ON {name} USING hnsw (nnn_augmented vector_ip_ops)")
    index_bytes = db.execute(f"SELECT pg_relation_size('{name}_hnsw')").fetchone()[0]
    insert_hnsw = seconds(db, insert_sql)
    db.execute(f"DELETE FROM {name} WHERE id >= {10 * n}")
    build["nnn Faiss HNSW32 (nnn.set_ann)"] = seconds(db, f"SELECT nnn.set_ann('{name}', 'HNSW32')")
    db.execute(f"VACUUM ANALYZE {name}")
    db.execute(f"SELECT nnn.prune_changes('{name}')")
    db.execute(f"SELECT count(*) FROM nnn_search('{name}', %s::real[], 1)", (queries[0].tolist(),))  # fill the cache
    print(f"{'build':<48} {'seconds':>9}")
    for k, v in build.items():
        print(f"  {k:<46} {v:>9.2f}")
    print(f"{'augmented column cost':<48} {'':>9}")
    print(f"  {'stored bytes per row: embedding / augmented':<46} {float(col[0]):>9.0f} {float(col[1]):>7.0f}")
    print(f"  {'table bytes per row (TOAST incl.): before / after':<46} {size1 / n:>9.0f} {size2 / n:>7.0f}")
    print(f"  {'HNSW index bytes per row':<46} {index_bytes / n:>9.0f}")
    print(f"  {'nnn.refresh s: plain / with augmented':<46} {refresh_plain:>9.2f} {refresh_aug:>7.2f}  ({refresh_aug / refresh_plain:.2f}x)")
    print(f"  {'1,000-row INSERT s: plain / aug / aug+HNSW':<46} {insert_plain:>9.3f} {insert_aug:>7.3f} {insert_hnsw:>7.3f}")
    print(f"  {'one-row INSERT ms: no nnn index / nnn index':<46} {one_row[0] * 1000:>9.2f} {one_row[1] * 1000:>7.2f}", flush=True)
    rows = measure(db, name, queries, name)
    print(f"{'search (single query, server time)':<48} {'recall@10':>9} {'ms':>9}")
    for _, path, recall, secs in rows:
        print(f"  {path:<46} {recall:>9.3f} {secs * 1000:>9.2f}")
    sys.stdout.flush()


def main():
    with psycopg.connect(autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        db.execute(f"SET nnn.threads = {os.environ.get('NNN_BENCH_THREADS', '2')}")
        db.execute("SET nnn.max_memory_mb = 8192")  # a 1,000,000-row build keeps 1M x 128 similarities
        rng = np.random.default_rng(7)
        bench(db, "wordnet_dev", dev("candidates.f16"), dev("reference.f16"), dev("queries.f16")[rng.choice(2000, QUERIES, replace=False)])
        centers = rng.normal(0, 1, (100, DIM)).astype(np.float32)
        cand = clustered(ROWS, DIM, rng, centers)
        ref = clustered(20_000, DIM, rng, centers)
        queries = clustered(QUERIES, DIM, rng, centers)
        bench(db, "clustered", cand, ref, queries)


if __name__ == "__main__":
    main()
