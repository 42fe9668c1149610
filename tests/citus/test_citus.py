"""NNN on a Citus cluster (a coordinator and two workers): wordnet-small as a distributed
table (8 shards) with its reference set as a Citus reference table, against the same data in
local tables of the coordinator (one node). Biases are built on the workers and equal one
node's; a failure on one worker leaves every shard as it was; the ORDER BY path is pushed down
to the shards and equals one node's nnn_search, with alpha taken once on the coordinator."""
import pathlib
import time

import numpy as np
import psycopg
import pytest

from copy_vectors import copy_vectors

SMALL = pathlib.Path(__file__).resolve().parents[2] / "data" / "wordnet-small"


def f16(name):
    return np.fromfile(SMALL / name, dtype="<f2").astype(np.float32).reshape(-1, 384)


def vec(q):
    return "[" + ",".join(f"{x:.7g}" for x in q) + "]"


@pytest.fixture(scope="module")
def data():
    """The tables: wc (distributed by id) / wr (reference table), and lc / lr (local), with
    the same rows; cat = id % 5. An nnn index 'local' over lc."""
    cand, ref = f16("candidates.f16"), f16("reference.f16")
    with psycopg.connect(autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        c.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for t, r in (("wc", "wr"), ("lc", "lr")):
            c.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, emb real[], cat int)")
            c.execute(f"CREATE TABLE {r} (emb real[])")
        c.execute("SELECT create_distributed_table('wc', 'id', shard_count => 8)")
        c.execute("SELECT create_reference_table('wr')")
        for t, r in (("wc", "wr"), ("lc", "lr")):
            copy_vectors(c, t, np.arange(len(cand)), cand)
            copy_vectors(c, r, None, ref)
            c.execute(f"UPDATE {t} SET cat = id % 5")
        c.execute("SELECT nnn.create_index('local', 'lc', 'id', 'emb', 'lr', 'emb', k => 16)")
    return cand, ref


def biases(c, table, column="nnn_bias"):
    return np.array([b for (b,) in c.execute(f"SELECT {column} FROM {table} ORDER BY id")], dtype=np.float64)


def test_a_build_on_the_workers_equals_one_node(data, connect):
    c = connect()
    rows, skipped, ref_rows, k, _ = c.execute("SELECT * FROM nnn.build_bias('wc', 'emb', 'wr', 'emb', k => 16)").fetchone()
    assert (rows, skipped, ref_rows, k) == (500, 0, 8000, 16)
    assert np.abs(biases(c, "wc") - biases(c, "lc")).max() <= 1e-6
    # computed where the rows live: every worker ran nnn.shard_bias, the coordinator never did
    # (the nodes run with track_functions = all; a backend reports its counts when it goes idle)
    assert function_calls(c, "shard_bias") == 0
    for port in workers_of(c):
        w = connect(port=port)
        deadline = time.monotonic() + 30
        while function_calls(w, "shard_bias") == 0:
            assert time.monotonic() < deadline, f"no nnn.shard_bias call on the worker at port {port}"
            time.sleep(0.1)


def function_calls(conn, name):
    return conn.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE schemaname = 'nnn' AND funcname = %s",
                        (name,)).fetchone()[0]


def workers_of(c):
    return [p for (p,) in c.execute("SELECT DISTINCT nodeport FROM citus_shards WHERE table_name = 'wc'::regclass")]


def test_a_failure_on_one_worker_leaves_every_shard_as_it_was(data, connect):
    c = connect()
    c.execute("SELECT nnn.build_bias('wc', 'emb', 'wr', 'emb', k => 16)")
    before = biases(c, "wc")
    row = c.execute("SELECT emb FROM lc WHERE id = 7").fetchone()[0]
    c.execute("UPDATE wc SET emb = array_fill('NaN'::real, ARRAY[384]) WHERE id = 7")  # one row of one shard
    with pytest.raises(psycopg.errors.DataException) as e:
        c.execute("SELECT nnn.build_bias('wc', 'emb', 'wr', 'emb', k => 4)")
    assert "NaN" in e.value.diag.message_primary
    assert "backtrace" not in (e.value.diag.message_detail or "") and "panicked" not in str(e.value)
    c.execute("UPDATE wc SET emb = %s::real[] WHERE id = 7", (row,))
    after = biases(c, "wc")
    assert np.array_equal(before, after)  # no shard got the k = 4 biases


def test_clean_errors_on_distributed_tables(data, connect):
    c = connect()
    c.execute("CREATE TABLE wl_ref (emb real[])")  # a local table: not a Citus reference table
    c.execute("INSERT INTO wl_ref SELECT emb FROM lr LIMIT 10")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="not a Citus reference table") as e:
        c.execute("SELECT nnn.build_bias('wc', 'emb', 'wl_ref', 'emb', k => 2)")
    assert "create_reference_table" in e.value.diag.message_hint
    c.execute("CREATE TABLE wt (id bigint, tenant int, emb real[])")
    c.execute("SELECT create_distributed_table('wt', 'tenant')")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="no unique index"):
        c.execute("SELECT nnn.build_bias('wt', 'emb', 'wr', 'emb', k => 2)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="larger than the 8000 reference rows") as e:
        c.execute("SELECT nnn.build_bias('wc', 'emb', 'wr', 'emb', k => 9000)")
    assert e.value.diag.message_detail is None
    c.execute("DROP TABLE wl_ref, wt")


@pytest.fixture(scope="module")
def index(data):
    """nnn.create_index over the distributed table, with the augmented column."""
    with psycopg.connect(autocommit=True) as c:
        notices = []
        c.add_notice_handler(lambda n: notices.append(n.message_primary))
        c.execute("SELECT nnn.create_index('dist', 'wc', 'id', 'emb', 'wr', 'emb', k => 16, augmented => 'vector')")
        assert any("nnn.refresh_rows('dist', ids)" in n for n in notices), notices
        c.execute("SELECT nnn.set_augmented('local', 'vector')")
    return "dist"


def test_new_and_updated_rows_get_their_bias_from_refresh_rows(index, connect):
    c = connect()
    new = f16("queries.f16")[:20]  # any vectors: 20 new candidates
    ids = np.arange(10_000, 10_020)
    for t in ("wc", "lc"):
        copy_vectors(c, t, ids, new)
    assert c.execute("SELECT count(*) FROM wc WHERE id >= 10000 AND nnn_bias IS NULL").fetchone()[0] == 20
    assert c.execute("SELECT nnn.refresh_rows('dist', %s)", (ids.tolist(),)).fetchone()[0] == 20
    # the local index's trigger gave lc's copies theirs
    assert np.abs(biases(c, "wc") - biases(c, "lc")).max() <= 1e-6
    # the augmented column follows the bias on every shard
    assert c.execute("SELECT count(*) FROM wc WHERE nnn_augmented IS NULL").fetchone()[0] == 0
    # an updated embedding gets its new bias the same way
    moved = f16("queries.f16")[100]
    for t in ("wc", "lc"):
        c.execute(f"UPDATE {t} SET emb = %s::real[] WHERE id = 10005", (moved.tolist(),))
    stale = c.execute("SELECT (SELECT nnn_bias FROM wc WHERE id = 10005) <> (SELECT nnn_bias FROM lc WHERE id = 10005)").fetchone()[0]
    assert stale  # no trigger ran on the distributed table
    c.execute("SELECT nnn.refresh_rows('dist', '{10005}')")
    assert np.abs(biases(c, "wc") - biases(c, "lc")).max() <= 1e-6
    for t in ("wc", "lc"):
        c.execute(f"DELETE FROM {t} WHERE id >= 10000")


def local_top(c, q, alpha, among=None):
    c.execute(f"SET nnn.alpha = {alpha}")
    try:
        if among is None:
            return [i for (i,) in c.execute("SELECT id FROM nnn_search('local', %s::real[], 10)", (q.tolist(),))]
        return [i for (i,) in c.execute(
            "SELECT id FROM nnn_search('local', %s::real[], 10, (SELECT array_agg(id) FROM lc WHERE " + among + "))",
            (q.tolist(),))]
    finally:
        c.execute("RESET nnn.alpha")


def test_the_order_by_path_runs_on_the_shards_and_equals_one_node(index, connect):
    c = connect()
    queries = f16("queries.f16")
    sql = "SELECT id FROM wc {where} ORDER BY nnn_augmented <#> nnn.query_vector(%s::vector, 0.75) LIMIT 10"
    plan = "\n".join(r for (r,) in c.execute("EXPLAIN " + sql.format(where=""), (vec(queries[0]),)))
    assert "Citus Adaptive" in plan and "Task Count: 8" in plan
    for qi in range(0, 472, 59):
        q = queries[qi]
        assert [i for (i,) in c.execute(sql.format(where=""), (vec(q),))] == local_top(c, q, 0.75)
        assert [i for (i,) in c.execute(sql.format(where="WHERE cat = 2"), (vec(q),))] == local_top(c, q, 0.75, "cat = 2")
    # nnn_search over the distributed index reads the rows where they are: the same answer
    q = queries[11]
    assert [i for (i,) in c.execute("SELECT id FROM nnn_search('dist', %s::real[], 10)", (q.tolist(),))] == local_top(c, q, 0.75)


def test_alpha_is_taken_once_on_the_coordinator(index, connect):
    """A session's nnn.alpha does not reach the workers' sessions: the query vector is made on
    the coordinator (an uncorrelated subquery, or an explicit alpha) and sent to the shards;
    an alpha left to a worker is an error unless SET LOCAL propagated it."""
    c = connect()
    q = f16("queries.f16")[42]
    c.execute("SET nnn.alpha = 0.2")
    got = [i for (i,) in c.execute(
        "SELECT id FROM wc ORDER BY nnn_augmented <#> (SELECT nnn.query_vector(%s::vector)) LIMIT 10", (vec(q),))]
    assert got == local_top(c, q, 0.2)
    assert got != local_top(c, q, 0.75)  # alpha matters on this query
    # left to the workers, an unset alpha is an error, not their default
    for sql in ("SELECT id FROM wc ORDER BY nnn_augmented <#> nnn.query_vector(%s::vector) LIMIT 10",
                "SELECT id FROM wc ORDER BY nnn_score(emb, %s::vector::real[], nnn_bias) DESC LIMIT 10"):
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not set in this Citus worker's session") as e:
            c.execute(sql, (vec(q),))
        assert "nnn.query_vector(q)" in e.value.diag.message_hint
    # unless the setting travels with the transaction (Citus propagates SET LOCAL when asked)
    c.execute("SET citus.propagate_set_commands = 'local'")
    with c.transaction():
        c.execute("SET LOCAL nnn.alpha = 0.2")
        got = [i for (i,) in c.execute(
            "SELECT id FROM wc ORDER BY nnn_augmented <#> nnn.query_vector(%s::vector) LIMIT 10", (vec(q),))]
    assert got == local_top(c, q, 0.2)


def test_hnsw_on_every_shard_matches_one_node(index, connect):
    c = connect()
    c.execute("CREATE INDEX wc_hnsw ON wc USING hnsw (nnn_augmented vector_ip_ops)")
    c.execute("CREATE INDEX lc_hnsw ON lc USING hnsw (nnn_augmented vector_ip_ops)")
    queries = f16("queries.f16")[:60]
    recall = {}
    c.execute("SET enable_seqscan = off")
    c.execute("SET hnsw.ef_search = 100")
    for t in ("wc", "lc"):
        hits = 0
        for q in queries:
            got = {i for (i,) in c.execute(
                f"SELECT id FROM {t} ORDER BY nnn_augmented <#> nnn.query_vector(%s::vector, 0.75) LIMIT 10", (vec(q),))}
            hits += len(got & set(local_top(c, q, 0.75)))
        recall[t] = hits / (10 * len(queries))
    c.execute("RESET enable_seqscan")
    assert recall["lc"] >= 0.95 and recall["wc"] >= recall["lc"] - 0.01, recall
    c.execute("DROP INDEX wc_hnsw")
    c.execute("DROP INDEX lc_hnsw")
