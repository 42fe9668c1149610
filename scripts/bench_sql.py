"""SQL-level benchmark (scripts/bench.sh runs it on a throw-away cluster after the engine bench):
- nnn_search(q, 10) latency over M candidates x 384 vs the engine alone on that shape, and vs
  ORDER BY nnn_score(...) DESC LIMIT 10;
- nnn.build_bias end to end (N candidates x M reference) vs the engine alone on that shape, in
  fresh connections (the fastest of three), with the backend's peak memory beside the size of the rows it reads,
  and the build's own profile on the same data (reading, engine, writing; its DEBUG1 report),
  for real[] and for pgvector vector(384) columns;
- nnn_search through a Faiss structure (IVF256,Flat, nnn.probes = 32) vs the exact path, with
  its recall@10 (uniform random rows: the hardest case for any approximate index).
Shapes match the engine bench: M = 100,000 and N = 10,000 (2,000 x 20,000 with NNN_BENCH_QUICK=1).
Reads the engine's RESULT lines from argv[1]. Prints ratios; asserts nothing (not a test).
"""
import os
import pathlib
import re
import statistics
import sys
import time

import numpy as np
import psycopg

QUICK = os.environ.get("NNN_BENCH_QUICK") == "1"
N, M = (2_000, 20_000) if QUICK else (10_000, 100_000)


def timed(conn, sql, params=None, reps=1):
    """Median client-side seconds (psycopg included) of running `sql`."""
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        conn.execute(sql, params).fetchall()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def server_timed(conn, sql, params=None, reps=1):
    """Median server-side execution seconds of `sql` (EXPLAIN ANALYZE's Execution Time)."""
    out = []
    for _ in range(reps):
        plan = conn.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, params).fetchone()[0]
        out.append(plan[0]["Execution Time"] / 1000.0)
    return statistics.median(out)


def fresh_build(suffix="", reps=3):
    """Seconds, the backend's peak memory (VmHWM, MiB) and the build's own profile (reading,
    engine, writing seconds, from its DEBUG1 report) of nnn.build_bias of `few` against `big`
    (`few_v`/`big_v`: pgvector columns), each run in a new connection so nothing else (e.g. the
    search cache) is counted: the fastest of `reps` runs, like every timing of the engine bench."""
    runs = []
    for _ in range(reps):
        profile = {}

        def on_notice(diag):
            m = re.search(r"in ([\d.]+) s: reading ([\d.]+) s, engine ([\d.]+) s, writing ([\d.]+) s", diag.message_primary or "")
            if m:
                profile.update(zip(("total", "reading", "engine", "writing"), map(float, m.groups())))

        with psycopg.connect(autocommit=True) as db:
            db.add_notice_handler(on_notice)
            db.execute(f"SET nnn.threads = {os.environ.get('NNN_BENCH_THREADS', '2')}")
            db.execute("SET client_min_messages = debug1")
            pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
            secs = timed(db, f"SELECT * FROM nnn.build_bias('few{suffix}', 'emb', 'big{suffix}', 'emb', k => 128)")
            status = pathlib.Path(f"/proc/{pid}/status").read_text()
            peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
        runs.append((secs, peak, profile))
    return min(runs, key=lambda r: r[0])


def first_queries(search_sql, search_args, pgv_sql, pgv_args):
    """Client seconds of the first nnn_search of a new session (it reads the rows and fills the
    session's cache) and of pgvector's first exact ORDER BY of another new session, medians of
    three sessions each."""
    def first(sql, args, setup):
        out = []
        for _ in range(3):
            with psycopg.connect(autocommit=True) as db:
                for stmt in setup:
                    db.execute(stmt)
                out.append(timed(db, sql, args))
        return statistics.median(out)

    return (first(search_sql, search_args, ["SET nnn.ann = off"]), first(pgv_sql, pgv_args, []))


def main():
    engine = {}
    for line in pathlib.Path(sys.argv[1]).read_text().splitlines():
        m = re.match(r"RESULT (\S+)\s+([\d.]+) s", line)
        if m:
            engine[m.group(1)] = float(m.group(2))
    with psycopg.connect(autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        db.execute(f"SET nnn.threads = {os.environ.get('NNN_BENCH_THREADS', '2')}")
        t = time.perf_counter()
        db.execute("CREATE TABLE big (id bigint PRIMARY KEY, emb real[])")
        db.execute(
            f"INSERT INTO big SELECT g, ARRAY(SELECT (random() - 0.5)::real FROM generate_series(1, 384) WHERE g > 0)"
            f" FROM generate_series(1, {M}) g"
        )
        db.execute(f"CREATE TABLE few AS SELECT id, emb FROM big WHERE id <= {N}")
        db.execute("CREATE TABLE ref AS SELECT emb FROM big WHERE id <= 1000")
        db.execute("VACUUM ANALYZE big, few")
        print(f"# loaded {M} x 384 candidates in {time.perf_counter() - t:.1f} s")
        db.execute("SELECT nnn.create_index('big', 'big', 'id', 'emb', 'ref', 'emb', k => 128)")
        q = (np.random.default_rng(1).random(384, dtype=np.float32) - 0.5).tolist()
        search_sql = "SELECT * FROM nnn_search('big', %s::real[], 10)"
        order_sql = "SELECT id FROM big ORDER BY nnn_score(emb, %s::real[], nnn_bias) DESC NULLS LAST LIMIT 10"
        search = timed(db, search_sql, (q,), reps=10)
        search_server = server_timed(db, search_sql, (q,), reps=10)
        order = timed(db, order_sql, (q,), reps=3)
        order_server = server_timed(db, order_sql, (q,), reps=3)
        build, peak_mib, profile = fresh_build()
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        db.execute("CREATE TABLE big_v AS SELECT id, emb::vector(384) AS emb FROM big")
        db.execute("CREATE TABLE few_v AS SELECT id, emb::vector(384) AS emb FROM few")
        db.execute("VACUUM ANALYZE big_v, few_v")
        build_v, _, profile_v = fresh_build("_v")
        db.execute("SELECT nnn.set_ann('big', 'IVF256,Flat')")
        db.execute("SET nnn.probes = 32")
        queries = (np.random.default_rng(2).random((20, 384), dtype=np.float32) - 0.5).tolist()
        ann_server = statistics.median(server_timed(db, search_sql, (qq,)) for qq in queries)
        approx = [{i for (i, _) in db.execute(search_sql, (qq,)).fetchall()} for qq in queries]
        db.execute("SET nnn.ann = off")
        truth = [{i for (i, _) in db.execute(search_sql, (qq,)).fetchall()} for qq in queries]
        recall = sum(len(a & b) for a, b in zip(approx, truth)) / (10 * len(queries))
        # pgvector's exact scan of the same ordering over the same rows (no pgvector index)
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        db.execute("SELECT nnn.set_augmented('big', 'vector')")
        db.execute("VACUUM ANALYZE big")
        qv = "[" + ",".join(f"{x:.7g}" for x in q) + f",{-0.75}]"
        pgv_sql = "SELECT id FROM big ORDER BY nnn_augmented <#> %s::vector LIMIT 10"
        pgv_server = server_timed(db, pgv_sql, (qv,), reps=5)
        search_server_now = server_timed(db, search_sql, (q,), reps=10)
    first_search, first_pgv = first_queries(search_sql, (q,), pgv_sql, (qv,))
    e_search = engine.get(f"search.single_query_{M}_cached", float("nan"))
    e_build = engine.get("synthetic.engine_bias", float("nan"))
    print(f"\n{'SQL benchmark (' + str(M) + ' x 384)':<48} {'seconds':>9} {'ratio':>9}")
    print(f"{'nnn_search(q, 10), from psycopg':<48} {search:>9.4f}")
    print(f"{'nnn_search(q, 10), server execution time':<48} {search_server:>9.4f}")
    print(f"{'  engine alone, cached shape; server / engine':<48} {e_search:>9.4f} {search_server / e_search:>8.1f}x")
    print(f"{'  ORDER BY nnn_score LIMIT 10 / nnn_search':<48} {order:>9.4f} {order / search:>8.1f}x")
    print(f"{'  the same, server execution times':<48} {order_server:>9.4f} {order_server / search_server:>8.1f}x")
    print(f"{'nnn.build_bias ' + str(N) + ' x ' + str(M):<48} {build:>9.3f}")
    print(f"{'  / engine alone, same shape':<48} {e_build:>9.3f} {build / e_build:>8.2f}x")
    for label, p in (("real[]", profile), ("vector", profile_v)):
        print(f"{'  profile, ' + label + ' columns: total / engine':<48} {p['total']:>9.3f} {p['total'] / p['engine']:>8.2f}x")
        print(f"{'    reading / engine / writing, s':<48} {p['reading']:>9.3f} {p['engine']:>9.3f} {p['writing']:>9.3f}")
    print(f"{'nnn.build_bias on vector(384) columns':<48} {build_v:>9.3f} {build_v / e_build:>8.2f}x")
    ref_mib, cand_mib = M * 384 * 4 / 2**20, N * 384 * 4 / 2**20
    print(f"{'  backend peak memory, MiB':<48} {peak_mib:>9.0f}")
    print(f"{'  reference + candidate rows as f32, MiB':<48} {ref_mib + cand_mib:>9.0f} {peak_mib / (ref_mib + cand_mib):>8.2f}x")
    print(f"{'pgvector exact ORDER BY <#> LIMIT 10, server':<48} {pgv_server:>9.4f} {pgv_server / search_server_now:>8.1f}x nnn_search's {search_server_now:.4f}")
    print(f"{'first nnn_search of a new session (fills cache)':<48} {first_search:>9.3f}")
    print(f"{'  pgvector exact ORDER BY, first of a session':<48} {first_pgv:>9.3f} {first_search / first_pgv:>8.1f}x")
    print(f"{'nnn_search(q, 10) via IVF256,Flat, probes 32':<48} {ann_server:>9.4f} {search_server / ann_server:>8.1f}x faster")
    print(f"{'  recall@10 against the exact path':<48} {recall:>9.3f}")


if __name__ == "__main__":
    main()
