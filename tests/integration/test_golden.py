"""build_bias and nnn_search over wordnet-small equal the reference package's golden files."""
import json

import numpy as np
import psycopg
import pytest

from copy_vectors import copy_vectors
from conftest import SMALL, load_wordnet_small, read_f16


def golden(name, dtype):
    return np.fromfile(SMALL / name, dtype=dtype)


def recall(idx, gt, n):
    hits = sum(int(g in row[:n]) for row, g in zip(idx, gt))
    return round(hits * 100.0 / len(gt), 2)


def check_topk(got_idx, got_score, gold_idx, gold_score):
    assert np.abs(got_score - gold_score).max() <= 1e-5
    for q in range(gold_idx.shape[0]):
        for r in range(10):
            s = gold_score[q]
            tied = (r > 0 and abs(s[r - 1] - s[r]) <= 1e-5) or (r < 9 and abs(s[r + 1] - s[r]) <= 1e-5)
            if not tied:
                assert got_idx[q, r] == gold_idx[q, r], (q, r)


def test_bias_and_search_match_golden(connect):
    conn = connect()
    load_wordnet_small(conn)
    rows, skipped, ref_rows, k = conn.execute(
        "SELECT rows, skipped, reference_rows, k FROM nnn.create_index('wn', 'wn_cand', 'id', 'emb', 'wn_ref', 'emb')"
    ).fetchone()
    assert (rows, skipped, ref_rows, k) == (500, 0, 8000, 128)
    bias = np.array([b for (b,) in conn.execute("SELECT nnn_bias FROM wn_cand ORDER BY id")], dtype=np.float32)
    assert np.abs(bias - golden("golden_bias_k128.f32", "<f4")).max() <= 1e-5

    queries = read_f16("queries.f16")
    gt = golden("queries_gt.i32", "<i4")
    meta = json.loads((SMALL / "golden.json").read_text())
    for alpha, prefix, key in ((0.75, "nnn", "nnn_k128_a0.75"), (0.0, "base", "base")):
        conn.execute(f"SET nnn.alpha = {alpha}")
        rows = conn.execute("SELECT query_no, rank, id, score FROM nnn_search_batch('wn', %s::real[], 10)", (queries.tolist(),)).fetchall()
        idx = np.zeros((len(queries), 10), dtype=np.int64)
        score = np.zeros((len(queries), 10), dtype=np.float32)
        for qn, rank, i, s in rows:
            idx[qn - 1, rank - 1], score[qn - 1, rank - 1] = i, s
        gold_idx = golden(f"golden_{prefix}_top10_idx.i32", "<i4").reshape(-1, 10)
        gold_score = golden(f"golden_{prefix}_top10_score.f32", "<f4").reshape(-1, 10)
        check_topk(idx, score, gold_idx, gold_score)
        assert [recall(idx, gt, n) for n in (1, 5, 10)] == [meta[key]["R@1"], meta[key]["R@5"], meta[key]["R@10"]]
        # the single-query function agrees with the batch
        for q in (0, 17, 471):
            single = conn.execute("SELECT id, score FROM nnn_search('wn', %s::real[], 10)", (queries[q].tolist(),)).fetchall()
            assert [i for i, _ in single] == list(idx[q])
    conn.execute("RESET nnn.alpha")
    # the ORM path ranks the same: ORDER BY nnn_score(...) LIMIT 10
    orm = conn.execute(
        "SELECT id FROM wn_cand ORDER BY nnn_score(emb, %s::real[], nnn_bias) DESC LIMIT 10", (queries[3].tolist(),)
    ).fetchall()
    fast = conn.execute("SELECT id FROM nnn_search('wn', %s::real[], 10)", (queries[3].tolist(),)).fetchall()
    assert orm == fast


def test_the_cache_keeps_a_16_bit_copy_and_answers_as_the_call_that_filled_it(connect):
    conn = connect()
    load_wordnet_small(conn, "wc_cand", "wc_ref")
    conn.execute("SELECT nnn.create_index('wc', 'wc_cand', 'id', 'emb', 'wc_ref', 'emb')")
    queries = read_f16("queries.f16")
    sql = "SELECT id, score FROM nnn_search('wc', %s::real[], 10)"
    first = conn.execute(sql, (queries[5].tolist(),)).fetchall()  # reads the table, fills the cache
    rows, held = conn.execute("SELECT rows, bytes FROM nnn.cache_info() WHERE index_name = 'wc'").fetchone()
    dim = len(queries[5])
    plain = rows * (16 + 4 * dim)  # id, bias and place in id order; the vector
    with open("/proc/cpuinfo") as f:
        avx2 = " avx2 " in f.read()
    assert rows == 500 and (held >= plain + rows * 2 * dim if avx2 else held == plain), (rows, held, plain)
    assert conn.execute(sql, (queries[5].tolist(),)).fetchall() == first  # from the cache, bit for bit
    for q in (17, 300, 471):
        cached = conn.execute(sql, (queries[q].tolist(),)).fetchall()
        conn.execute("SET nnn.cache_mb = 0")
        fresh = conn.execute(sql, (queries[q].tolist(),)).fetchall()
        conn.execute("RESET nnn.cache_mb")
        assert [i for i, _ in cached] == [i for i, _ in fresh]
        assert max(abs(a - b) for (_, a), (_, b) in zip(cached, fresh)) <= 1e-5


def test_a_cache_without_room_for_the_16_bit_copy_answers_as_a_fresh_read(connect):
    """An entry that fits nnn.cache_mb only without its 16-bit copy is kept without it (prepared
    for a GPU only): a batch of 200 queries from it ranks as the call that filled it and as a
    fresh read, bit for bit."""
    conn = connect()
    rng = np.random.default_rng(7)
    n, dim = 3000, 384
    cand, ref = rng.standard_normal((n, dim), dtype=np.float32), rng.standard_normal((500, dim), dtype=np.float32)
    conn.execute("CREATE TABLE wr_cand (id bigint PRIMARY KEY, emb real[])")
    conn.execute("CREATE TABLE wr_ref (emb real[])")
    copy_vectors(conn, "wr_cand", np.arange(n), cand)
    copy_vectors(conn, "wr_ref", None, ref)
    conn.execute("SELECT nnn.create_index('wr', 'wr_cand', 'id', 'emb', 'wr_ref', 'emb')")
    plain = n * (16 + 4 * dim)  # 4.6 MB; with the 16-bit copy about 7 MB
    conn.execute("SET nnn.cache_mb = 6")
    queries = rng.standard_normal((200, dim), dtype=np.float32).astype("<f4").tobytes()
    sql = "SELECT * FROM nnn_search_batch('wr', %s, 384, 10)"
    first = conn.execute(sql, (queries,)).fetchall()  # reads the table, fills the cache
    assert conn.execute("SELECT rows, bytes FROM nnn.cache_info() WHERE index_name = 'wr'").fetchone() == (n, plain)
    assert conn.execute(sql, (queries,)).fetchall() == first  # from the cache
    conn.execute("SET nnn.cache_mb = 0")
    assert conn.execute(sql, (queries,)).fetchall() == first  # a fresh read
    conn.execute("RESET nnn.cache_mb")


def test_nnn_score_equals_the_cached_search_scores(connect):
    """nnn_score ranks and scores as nnn_search does: with AVX2 (the cached search's exact pass
    and nnn_score share one dot product) bit for bit, elsewhere within 1e-5; bad vectors are
    the errors of nnn_score's checks, embedding before query, values before dimensions."""
    conn = connect()
    load_wordnet_small(conn, "ws_cand", "ws_ref")
    conn.execute("SELECT nnn.create_index('ws', 'ws_cand', 'id', 'emb', 'ws_ref', 'emb')")
    queries = read_f16("queries.f16")
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    avx2 = " avx2 " in flags and " fma " in flags
    for q in (0, 99, 471):
        query = queries[q].tolist()
        conn.execute("SELECT nnn_search('ws', %s::real[], 1)", (query,))  # fills the cache
        hits = conn.execute("SELECT id, score FROM nnn_search('ws', %s::real[], 20)", (query,)).fetchall()
        scores = dict(conn.execute(
            "SELECT id, nnn_score(emb, %s::real[], nnn_bias, 0.75) FROM ws_cand WHERE id = ANY(%s)",
            (query, [i for i, _ in hits])).fetchall())
        for i, s in hits:
            assert (scores[i] == s) if avx2 else abs(scores[i] - s) <= 1e-5, (q, i, scores[i], s)
    for emb, query, error, message in (
            ("{1,NaN}", "{1,2,3}", psycopg.errors.DataException, "embedding contains NaN"),
            ("{1,Infinity}", "{1,NULL}", psycopg.errors.DataException, "embedding contains NaN"),
            ("{1,2}", "{1,NULL}", psycopg.errors.NullValueNotAllowed, "query contains a NULL"),
            ("{1,NULL}", "{NaN}", psycopg.errors.NullValueNotAllowed, "embedding contains a NULL"),
            ("{1,2}", "{NaN,1,2}", psycopg.errors.DataException, "query contains NaN"),
            ("{1,2}", "{1,2,3}", psycopg.errors.DataException, "different vector dimensions 2 and 3"),
            ("{3e38,3e38}", "{3e38,3e38}", None, None)):
        sql = "SELECT nnn_score(%s::real[], %s::real[], 0, 0.75)"
        if error is None:  # finite vectors whose product overflows: an infinite score, no error
            assert conn.execute(sql, (emb, query)).fetchone()[0] == float("inf")
            continue
        with pytest.raises(error, match=message):
            conn.execute(sql, (emb, query))


def test_binary_batch_input_equals_the_array_form(connect):
    """nnn_search_batch(name, bytea of packed little-endian f32, dim, k): the same rows, bit for
    bit, as nnn_search_batch(name, real[][], k) on wordnet-small's 472 queries; bad input is a
    clear error."""
    conn = connect()
    load_wordnet_small(conn, "wb_cand", "wb_ref")
    conn.execute("SELECT nnn.create_index('wb', 'wb_cand', 'id', 'emb', 'wb_ref', 'emb')")
    queries = read_f16("queries.f16")
    text = conn.execute("SELECT * FROM nnn_search_batch('wb', %s::real[], 10)", (queries.tolist(),)).fetchall()
    packed = conn.execute("SELECT * FROM nnn_search_batch('wb', %s, 384, 10)", (queries.astype("<f4").tobytes(),)).fetchall()
    assert len(text) == 4720 and packed == text
    for data, dim, message in ((b"\0" * 10, 384, "10 bytes are not whole queries of dimension 384"),
                               (b"", 384, "0 bytes"), (b"\0" * 8, 0, "dimension 0"),
                               (np.full(384, np.nan, "<f4").tobytes(), 384, "NaN")):
        error = psycopg.errors.DataException if message == "NaN" else psycopg.errors.InvalidParameterValue
        with pytest.raises(error, match=message):
            conn.execute("SELECT * FROM nnn_search_batch('wb', %s, %s, 10)", (data, dim))
    with pytest.raises(psycopg.errors.DataException, match="dimension"):
        conn.execute("SELECT * FROM nnn_search_batch('wb', %s, 4, 10)", (queries[:2].astype("<f4").tobytes(),))
