"""NNN inside the planner, with pgvector installed: the augmented column [r, bias] ranked by
pgvector's `<#>` in ORDER BY ... LIMIT equals nnn_search exactly without an index, keeps its
recall through HNSW (filters included, with iterative scans), and answers as of the caller's
snapshot; nnn_search among an id set is the exact filtered top k; vector and halfvec embedding
columns give the biases of real[] ones. Independent answers come from numpy in float64."""
import pathlib

import numpy as np
import pytest

from conftest import load_wordnet_small, read_f16
from copy_vectors import copy_vectors

DEV = pathlib.Path(__file__).resolve().parents[2] / "data" / "wordnet-dev"
ALPHA = 0.75
EF_SEARCH = 100  # hnsw.ef_search the README documents for recall >= 0.95 on wordnet-dev


def dev(name):
    return np.fromfile(DEV / name, dtype="<f2").astype(np.float32).reshape(-1, 384)


def vec(q):
    return "[" + ",".join(repr(float(x)) for x in q) + "]"


@pytest.fixture(scope="module")
def wn(dbname):
    """wordnet-dev with categories (cat = id % 10: 10 %, rare = id % 100 = 0: 1 %), its nnn
    index 'pl' with an augmented vector column and no pgvector index yet."""
    import psycopg

    conn = psycopg.connect(dbname=dbname, autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    cand, ref = dev("candidates.f16"), dev("reference.f16")
    conn.execute("CREATE TABLE pl_img (id bigint PRIMARY KEY, emb real[], cat int, rare bool)")
    conn.execute("CREATE TABLE pl_ref (emb real[])")
    copy_vectors(conn, "pl_img", np.arange(len(cand)), cand)
    copy_vectors(conn, "pl_ref", None, ref)
    conn.execute("UPDATE pl_img SET cat = id % 10, rare = id % 100 = 0")
    conn.execute("SELECT nnn.create_index('pl', 'pl_img', 'id', 'emb', 'pl_ref', 'emb', augmented => 'vector')")
    bias = np.array([b for (b,) in conn.execute("SELECT nnn_bias FROM pl_img ORDER BY id")], dtype=np.float64)
    yield conn, cand.astype(np.float64), bias, dev("queries.f16")
    conn.close()


def exact_top(cand, bias, q, k, among=None):
    """The k best ids by q.r - alpha*bias in float64, among the given ids."""
    ids = np.arange(len(cand)) if among is None else np.asarray(sorted(among))
    s = cand[ids] @ q.astype(np.float64) - ALPHA * bias[ids]
    return [int(ids[i]) for i in np.argsort(-s, kind="stable")[:k]]


ORDER_BY = """SELECT id, -(nnn_augmented <#> nnn.query_vector(%(q)s::vector)) FROM pl_img {where}
              ORDER BY nnn_augmented <#> nnn.query_vector(%(q)s::vector) LIMIT %(k)s"""


def order_by(conn, q, k=10, where=""):
    return conn.execute(ORDER_BY.format(where=where), {"q": vec(q), "k": k}).fetchall()


def test_the_augmented_column_is_the_embedding_and_its_bias(wn):
    conn = wn[0]
    wrong = conn.execute(
        "SELECT count(*) FROM pl_img WHERE nnn_augmented::real[] IS DISTINCT FROM array_append(emb, nnn_bias)"
    ).fetchone()[0]
    dims = conn.execute("SELECT DISTINCT vector_dims(nnn_augmented) FROM pl_img").fetchall()
    assert wrong == 0 and dims == [(385,)]
    assert conn.execute("SELECT augmented_column FROM nnn.indexes WHERE name = 'pl'").fetchone()[0] == "nnn_augmented"


def test_exact_order_by_equals_nnn_search(wn):
    conn, cand, bias, queries = wn
    plan = "\n".join(r for (r,) in conn.execute("EXPLAIN " + ORDER_BY.format(where=""), {"q": vec(queries[0]), "k": 10}))
    assert "Seq Scan" in plan  # no pgvector index yet: the ORDER BY path is exact
    for qi in range(0, 2000, 20):
        q = queries[qi]
        got = order_by(conn, q)
        ref = conn.execute("SELECT id, score FROM nnn_search('pl', %s::vector, 10)", (vec(q),)).fetchall()
        assert max(abs(a[1] - b[1]) for a, b in zip(got, ref)) <= 1e-5, qi
        # ids equal, except that scores tied within 1e-5 may come in either order
        assert [i for i, s in got if not any(abs(s - t) <= 1e-5 and j != i for j, t in got)] == [
            i for i, s in ref if not any(abs(s - t) <= 1e-5 and j != i for j, t in ref)
        ], qi
        truth = exact_top(cand, bias, q, 10)
        exact = cand[truth] @ q.astype(np.float64) - ALPHA * bias[truth]
        assert np.abs(np.array([s for _, s in ref]) - exact).max() <= 1e-5, qi


def recall(conn, cand, bias, queries, where="", among=None):
    got, total = 0, 0
    for qi in range(0, 2000, 20):
        q = queries[qi]
        truth = exact_top(cand, bias, q, 10, among)
        rows = order_by(conn, q, where=where)
        assert len(rows) == min(10, len(truth)), (qi, len(rows))
        got += len({i for i, _ in rows} & set(truth))
        total += len(truth)
    return got / total


def test_hnsw_recall_and_filters_with_iterative_scans(wn):
    conn, cand, bias, queries = wn
    made = conn.execute("SELECT column_name, dimensions, index_name FROM nnn.set_augmented('pl', 'vector', 'hnsw')").fetchone()
    assert made == ("nnn_augmented", 385, "nnn_pl_augmented")
    conn.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
    # 2,000 rows are few enough for the planner to prefer a scan: make it use the index
    conn.execute("SET enable_seqscan = off")
    for where in ("", "WHERE cat = 3", "WHERE rare"):
        plan = "\n".join(r for (r,) in conn.execute("EXPLAIN " + ORDER_BY.format(where=where), {"q": vec(queries[0]), "k": 10}))
        assert "Index Scan using nnn_pl_augmented" in plan, plan
    unfiltered = recall(conn, cand, bias, queries)
    assert unfiltered >= 0.95, unfiltered
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    ten = [i for i in range(2000) if i % 10 == 3]
    one = [i for i in range(2000) if i % 100 == 0]
    r10 = recall(conn, cand, bias, queries, "WHERE cat = 3", ten)
    r1 = recall(conn, cand, bias, queries, "WHERE rare", one)
    assert r10 >= 0.9 and r1 >= 0.9, (r10, r1)
    rows = order_by(conn, queries[0], where="WHERE rare")
    assert all(i % 100 == 0 for i, _ in rows)
    conn.execute("RESET hnsw.iterative_scan; RESET enable_seqscan")
    conn.execute("SELECT nnn.set_augmented('pl', 'vector')")  # back to no index for other tests


def test_nnn_search_among_ids_is_the_exact_filtered_top_k(wn, connect):
    conn, cand, bias, queries = wn
    sql = """SELECT id, score FROM nnn_search('pl', %s::vector, 10, (SELECT array_agg(id) FROM pl_img WHERE cat = 7))"""
    seven = [i for i in range(2000) if i % 10 == 7]
    for qi in (1, 500, 1999):
        first = conn.execute(sql, (vec(queries[qi]),)).fetchall()  # fills the cache (or uses it)
        assert [i for i, _ in first] == exact_top(cand, bias, queries[qi], 10, seven)
        scores = cand[[i for i, _ in first]] @ queries[qi].astype(np.float64) - ALPHA * bias[[i for i, _ in first]]
        assert np.abs(np.array([s for _, s in first]) - scores).max() <= 1e-5
    assert conn.execute("SELECT count(*) FROM nnn.cache_info() WHERE index_name = 'pl'").fetchone()[0] == 1
    # another session writes a row of the filter that beats every other: the cached search sees it
    q = queries[1]
    writer = connect()
    writer.execute("INSERT INTO pl_img (id, emb, cat) VALUES (5007, %s::real[], 7)", ([float(x) * 3 for x in q],))
    assert conn.execute(sql, (vec(q),)).fetchone()[0] == 5007
    # ids outside the index, duplicates and an empty set
    assert conn.execute("SELECT count(*) FROM nnn_search('pl', %s::vector, 10, '{5007,5007,999999}')", (vec(q),)).fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM nnn_search('pl', %s::vector, 10, '{}')", (vec(q),)).fetchone()[0] == 0
    writer.execute("DELETE FROM pl_img WHERE id = 5007")
    assert conn.execute(sql, (vec(q),)).fetchone()[0] != 5007


@pytest.fixture
def toy(connect):
    c = connect()
    c.execute("CREATE EXTENSION IF NOT EXISTS vector")
    c.execute("DROP TABLE IF EXISTS pm_img, pm_ref CASCADE")
    c.execute("CREATE TABLE pm_img (id int PRIMARY KEY, emb vector(3))")
    c.execute("CREATE TABLE pm_ref (emb vector(3))")
    c.execute("INSERT INTO pm_img VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0,0,1]')")
    c.execute("INSERT INTO pm_ref VALUES ('[1,0,0]'), ('[0,1,0]'), ('[0.5,0.5,0]')")
    c.execute("SELECT nnn.create_index('pm', 'pm_img', 'id', 'emb', 'pm_ref', 'emb', k => 1, augmented => 'vector')")
    return c  # the next test's DROP TABLE also forgets the index


def ranked(conn, q="[0,0,1]"):
    return [i for (i,) in conn.execute(
        "SELECT id FROM pm_img ORDER BY nnn_augmented <#> nnn.query_vector(%s::vector) LIMIT 10", (q,))]


def searched(conn, q="[0,0,1]"):
    return [i for (i,) in conn.execute("SELECT id FROM nnn_search('pm', %s::vector, 10)", (q,))]


def test_order_by_answers_as_of_the_callers_snapshot(toy, connect):
    reader = connect(autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    first = ranked(reader)
    assert first == searched(reader) and first[0] == 3
    writer = connect(autocommit=False)
    writer.execute("INSERT INTO pm_img VALUES (4, '[0,0,2]')")
    writer.execute("UPDATE pm_img SET emb = '[0,0,0.1]' WHERE id = 3")
    assert ranked(toy)[0] == 3 and 4 not in ranked(toy)  # uncommitted: invisible
    writer.commit()
    assert ranked(reader) == first == searched(reader)  # the reader's snapshot is older
    reader.commit()
    now = ranked(reader)
    assert now[0] == 4 and now == searched(reader)
    writer.execute("DELETE FROM pm_img WHERE id = 4")
    writer.execute("INSERT INTO pm_img VALUES (5, '[0,0,9]')")
    writer.rollback()
    assert ranked(toy)[0] == 4 and 5 not in ranked(toy)
    writer.execute("DELETE FROM pm_img WHERE id = 4")
    writer.commit()
    assert 4 not in ranked(toy) and ranked(toy) == searched(toy)


def test_own_uncommitted_rows_rank_with_their_bias(toy, connect):
    me = connect(autocommit=False)
    me.execute("INSERT INTO pm_img VALUES (7, '[0,0,5]')")
    assert ranked(me)[0] == 7 == searched(me)[0]
    aug = me.execute("SELECT nnn_augmented::real[] FROM pm_img WHERE id = 7").fetchone()[0]
    assert aug == [0.0, 0.0, 5.0, 0.0]  # bias of [0,0,5] against the reference: 0
    me.rollback()


@pytest.mark.parametrize("kind", ["vector", "halfvec"])
def test_vector_and_halfvec_embedding_columns_equal_real_arrays(connect, kind):
    conn = connect()
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    cand, ref = load_wordnet_small(conn, f"pt_{kind}_a", f"pt_{kind}_ra")
    conn.execute(f"CREATE TABLE pt_{kind} (id bigint PRIMARY KEY, emb {kind}(384))")
    conn.execute(f"CREATE TABLE pt_{kind}_ref (emb {kind}(384))")
    conn.execute(f"INSERT INTO pt_{kind} SELECT id, emb::{kind} FROM pt_{kind}_a")
    conn.execute(f"INSERT INTO pt_{kind}_ref SELECT emb::{kind} FROM pt_{kind}_ra")
    conn.execute(f"SELECT nnn.create_index('pt_{kind}_a', 'pt_{kind}_a', 'id', 'emb', 'pt_{kind}_ra', 'emb')")
    conn.execute(f"SELECT nnn.create_index('pt_{kind}', 'pt_{kind}', 'id', 'emb', 'pt_{kind}_ref', 'emb')")
    # the data are float16 values, which halfvec holds exactly: the same biases
    diff = conn.execute(
        f"SELECT max(abs(a.nnn_bias - b.nnn_bias)), count(*) FROM pt_{kind}_a a JOIN pt_{kind} b USING (id)"
    ).fetchone()
    assert diff[0] <= 1e-6 and diff[1] == 500
    q = read_f16("queries.f16")[9]
    arr = conn.execute(f"SELECT id FROM nnn_search('pt_{kind}_a', %s::real[], 10)", (q.tolist(),)).fetchall()
    typed = conn.execute(f"SELECT id FROM nnn_search('pt_{kind}', %s::{kind}::real[], 10)", (vec(q),)).fetchall()
    scored = conn.execute(
        f"SELECT id FROM pt_{kind} ORDER BY nnn_score(emb::real[], %s::real[], nnn_bias) DESC LIMIT 10", (q.tolist(),)
    ).fetchall()
    assert arr == typed == scored
    # new rows of a typed column get their bias from the trigger
    conn.execute(f"INSERT INTO pt_{kind} SELECT 9000, emb FROM pt_{kind} WHERE id = 3")
    same = conn.execute(f"SELECT a.nnn_bias = b.nnn_bias FROM pt_{kind} a, pt_{kind} b WHERE a.id = 9000 AND b.id = 3").fetchone()
    assert same == (True,)


def test_searches_read_a_vector_augmented_column_as_the_embedding_and_bias(connect):
    """With a `vector` augmented column nnn_search reads rows from it (in the row, in place);
    the answers equal, bit for bit, those read from the embedding and bias columns: without
    the column, with a `halfvec` one (rounded, so not read), and after the column was dropped
    behind nnn's back; cached and uncached alike."""
    conn = connect()
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    load_wordnet_small(conn, "pr_img", "pr_ref")
    conn.execute("SELECT nnn.create_index('pr', 'pr_img', 'id', 'emb', 'pr_ref', 'emb')")
    queries = read_f16("queries.f16")[:40]
    sql = "SELECT id, score FROM nnn_search('pr', %s::real[], 10)"

    def answers():
        out = []
        for cache_mb in (0, 1024):  # read every row each call, then from the session's cache
            conn.execute(f"SET nnn.cache_mb = {cache_mb}")
            out.append([conn.execute(sql, (q.tolist(),)).fetchall() for q in queries])
        conn.execute("RESET nnn.cache_mb")
        return out

    plain = answers()
    for kind in ("vector", "halfvec"):
        conn.execute("SELECT nnn.set_augmented('pr', %s)", (kind,))
        assert answers() == plain, kind
    conn.execute("SELECT nnn.set_augmented('pr', 'vector')")
    conn.execute("ALTER TABLE pr_img DROP COLUMN nnn_augmented")
    assert answers() == plain
