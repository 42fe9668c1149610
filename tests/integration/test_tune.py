"""nnn.evaluate and nnn.tune on wordnet-small: the grid equals an independent numpy
implementation and the reference package's golden recalls; tuning is reproducible, applies
its pick, and the stored alpha gives way to a set nnn.alpha."""
import json

import numpy as np
import psycopg
import pytest

from conftest import SMALL, load_wordnet_small, read_f16
from copy_vectors import copy_vectors


@pytest.fixture(scope="module")
def wn(dbname):
    """wordnet-small as an index 'wn' (k = 128) and its labelled queries wn_q (answer, emb)."""
    with psycopg.connect(dbname=dbname, autocommit=True) as c:
        load_wordnet_small(c)
        c.execute("SELECT nnn.create_index('wn', 'wn_cand', 'id', 'emb', 'wn_ref', 'emb')")
        c.execute("CREATE TABLE wn_q (answer bigint, emb real[])")
        gt = np.fromfile(SMALL / "queries_gt.i32", dtype="<i4")
        copy_vectors(c, "wn_q", gt, read_f16("queries.f16"), columns=["answer", "emb"])
    return "wn"


def numpy_grid(ks, alphas, betas):
    """recall@1/5/10 (percent) and MRR per cell, computed here with numpy: biases in float64,
    scores in float32 as the engine ranks them, ties to the lower row."""
    cand, ref, q = read_f16("candidates.f16"), read_f16("reference.f16"), read_f16("queries.f16")
    gt = np.fromfile(SMALL / "queries_gt.i32", dtype="<i4")
    sims = cand.astype(np.float64) @ ref.astype(np.float64).T
    srt = -np.sort(-sims, axis=1)
    biases = {("nnn", k): srt[:, :k].mean(axis=1) for k in ks}
    biases[("dn", None)] = sims.mean(axis=1)
    for b in betas:
        m = sims.max(axis=1, keepdims=True)
        biases[("lse", b)] = (m[:, 0] + np.log(np.exp(b * (sims - m)).sum(axis=1)) / b)
    products = q @ cand.T

    def metrics(bias, alpha):
        s = products if bias is None else products - np.float32(alpha) * bias.astype(np.float32)
        right = s[np.arange(len(gt)), gt][:, None]
        rows = np.arange(s.shape[1])[None, :]
        rank = 1 + ((s > right) | ((s == right) & (rows < gt[:, None]))).sum(axis=1)
        return [100 * np.mean(rank <= n) for n in (1, 5, 10)] + [np.mean(1.0 / rank)]

    out = {("plain", None, 0.0): metrics(None, 0.0)}
    for (family, p), bias in biases.items():
        for a in alphas:
            out[(family, p, a)] = metrics(bias, a)
    return out


def test_the_grid_equals_numpy_and_the_golden_recalls(wn, connect):
    c = connect()
    rows = c.execute(
        "SELECT family, k, beta, alpha, recall_1, recall_5, recall_10, mrr, queries FROM nnn.evaluate("
        "'wn', 'wn_q', 'emb', 'answer', ks => '{16,128}', alphas => '{0.5,0.75}', "
        "families => '{nnn,dn,lse}', betas => '{20}')").fetchall()
    want = numpy_grid([16, 128], [0.5, 0.75], [20.0])
    assert len(rows) == len(want) == 1 + 4 * 2
    for family, k, beta, alpha, r1, r5, r10, mrr, n in rows:
        key = (family, k if family == "nnn" else beta, alpha)
        assert n == 472
        assert np.allclose([r1, r5, r10], want[key][:3], atol=0.01), (key, [r1, r5, r10], want[key])
        assert abs(mrr - want[key][3]) <= 1e-4, (key, mrr, want[key][3])
    gold = json.loads((SMALL / "golden.json").read_text())
    got = {(f, k, a): [round(x, 2) for x in (r1, r5, r10)] for f, k, _, a, r1, r5, r10, _, _ in rows}
    assert got[("plain", None, 0.0)] == [gold["base"][m] for m in ("R@1", "R@5", "R@10")]
    assert got[("nnn", 128, 0.75)] == [gold["nnn_k128_a0.75"][m] for m in ("R@1", "R@5", "R@10")]


def test_several_right_answers_count_the_best_ranked(wn, connect):
    """With each query's own NNN top-1 added to its answers, every query is right at rank 1."""
    c = connect()
    c.execute("CREATE TEMP TABLE multi AS SELECT ARRAY[answer, (SELECT id FROM nnn_search('wn', emb, 1))] AS answers, emb FROM wn_q")
    sql = "SELECT recall_1, recall_10, mrr FROM nnn.evaluate('wn', %s, 'emb', %s, '{128}', '{0.75}') WHERE family = 'nnn'"
    one = c.execute(sql, ("wn_q", "answer")).fetchone()
    assert one[0] < 50
    assert c.execute(sql, ("multi", "answers")).fetchone() == (100.0, 100.0, 1.0)


def test_tune_is_reproducible_and_reports_on_the_other_part(wn, connect):
    c = connect()
    sql = "SELECT * FROM nnn.tune('wn', 'wn_q', 'emb', 'answer', '{16,64,128}', '{0.25,0.5,0.75,1}', seed => %s)"
    first = c.execute(sql, (7,)).fetchall()
    assert c.execute(sql, (7,)).fetchall() == first
    assert [r[0] for r in first] == ["tuned", "current", "plain"]
    tuned, current, plain = first
    assert current[1:5] == ("nnn", 128, None, 0.75) and plain[1:5] == ("plain", None, None, 0.0)
    assert tuned[5] >= current[5] and tuned[5] >= plain[5]  # best on the tuning part
    assert 150 < tuned[10] < 322 and not tuned[11]  # about half the 472 queries are left to test
    assert c.execute(sql, (8,)).fetchall()[0][10] != tuned[10] or c.execute(sql, (8,)).fetchall() != first
    assert c.execute("SELECT k, alpha FROM nnn.indexes WHERE name = 'wn'").fetchone() == (128, None)


def poor_current_ranker(c):
    """Gives index 'wn' a poor ranker (NNN k = 1, alpha = -1), so that a tuned pick differs."""
    c.execute("UPDATE nnn.indexes SET k = 1 WHERE name = 'wn'")
    c.execute("SELECT nnn.refresh('wn')")
    c.execute("SELECT nnn.set_alpha('wn', -1)")
    return c


def test_applying_a_pick_rebuilds_and_stores_it_and_nnn_alpha_still_wins(wn, connect):
    c = poor_current_ranker(connect())
    sql = ("SELECT pick, k, alpha, applied FROM nnn.tune('wn', 'wn_q', 'emb', 'answer', '{16}', '{0.5}', "
           "metric => 'mrr', tune_fraction => 0.6, seed => 1, apply => %s)")
    dry = c.execute(sql, (False,)).fetchall()
    assert c.execute("SELECT k, alpha FROM nnn.indexes WHERE name = 'wn'").fetchone() == (1, -1.0)
    done = c.execute(sql, (True,)).fetchall()
    assert [r[:3] for r in done] == [r[:3] for r in dry]
    assert done[0] == ("tuned", 16, 0.5, True)
    assert c.execute("SELECT k, alpha FROM nnn.indexes WHERE name = 'wn'").fetchone() == (16, 0.5)
    assert c.execute("SELECT nnn.index_alpha('wn')").fetchone()[0] == 0.5
    # biases equal a separate build at the stored k
    c.execute("SELECT nnn.build_bias('wn_cand', 'emb', 'wn_ref', 'emb', 'check_bias', k => 16)")
    assert c.execute("SELECT max(abs(nnn_bias - check_bias)) FROM wn_cand").fetchone()[0] <= 1e-6
    # searches rank with the stored alpha until nnn.alpha is set, then with the setting
    q = read_f16("queries.f16")[5].tolist()

    def top_score(alpha):
        return c.execute("SELECT max(nnn_score(emb, %s::real[], nnn_bias, %s)) FROM wn_cand", (q, alpha)).fetchone()[0]

    c.execute("SELECT nnn.set_alpha('wn', 0.3)")
    assert c.execute("SELECT score FROM nnn_search('wn', %s::real[], 1)", (q,)).fetchone()[0] == pytest.approx(top_score(0.3), abs=1e-5)
    c.execute("SET nnn.alpha = 0.9")
    assert c.execute("SELECT nnn.index_alpha('wn')").fetchone()[0] == pytest.approx(0.9)
    assert c.execute("SELECT score FROM nnn_search('wn', %s::real[], 1)", (q,)).fetchone()[0] == pytest.approx(top_score(0.9), abs=1e-5)
    c.execute("RESET nnn.alpha")
    assert c.execute("SELECT nnn.index_alpha('wn')").fetchone()[0] == pytest.approx(0.3)
    c.execute("SELECT nnn.set_alpha('wn', NULL)")
    assert c.execute("SELECT nnn.index_alpha('wn')").fetchone()[0] == pytest.approx(0.75)
    c.execute("ALTER TABLE wn_cand DROP COLUMN check_bias")
    c.execute("UPDATE nnn.indexes SET k = 128, alpha = NULL WHERE name = 'wn'")
    c.execute("SELECT nnn.refresh('wn')")


def naive_family_bias(family, beta=None):
    cand, ref = read_f16("candidates.f16").astype(np.float64), read_f16("reference.f16").astype(np.float64)
    sims = cand @ ref.T
    if family == "dn":
        return sims.mean(axis=1)
    m = sims.max(axis=1, keepdims=True)
    return m[:, 0] + np.log(np.exp(beta * (sims - m)).sum(axis=1)) / beta


@pytest.mark.parametrize("family, beta", [("dn", None), ("lse", 20.0)])
def test_an_index_of_another_family_builds_and_keeps_its_biases(wn, connect, family, beta):
    c = connect()
    cand = read_f16("candidates.f16")
    c.execute(f"CREATE TABLE f_{family} AS SELECT id, emb FROM wn_cand WHERE id < 400")
    c.execute(f"ALTER TABLE f_{family} ADD PRIMARY KEY (id)")
    c.execute(f"SELECT nnn.create_index('f_{family}', 'f_{family}', 'id', 'emb', 'wn_ref', 'emb', family => %s, beta => %s)",
              (family, beta))
    assert c.execute("SELECT family, beta FROM nnn.indexes WHERE name = %s", (f"f_{family}",)).fetchone() == (family, beta)
    # the trigger gives new rows the family's bias too
    c.execute(f"INSERT INTO f_{family} SELECT id, emb FROM wn_cand WHERE id >= 400")
    got = np.array([b for (b,) in c.execute(f"SELECT nnn_bias FROM f_{family} ORDER BY id")], dtype=np.float64)
    want = naive_family_bias(family, beta)
    assert len(got) == len(cand) and np.abs(got - want).max() <= 1e-5
    # and searches rank by q·r − α·bias with it
    q = read_f16("queries.f16")[3]
    top = c.execute(f"SELECT id, score FROM nnn_search('f_{family}', %s::real[], 5)", (q.tolist(),)).fetchall()
    scores = cand.astype(np.float64) @ q.astype(np.float64) - 0.75 * want
    assert [i for i, _ in top] == list(np.argsort(-scores, kind="stable")[:5])
    c.execute(f"SELECT nnn.drop_index('f_{family}')")


def test_tune_across_families_applies_the_family(wn, connect):
    c = poor_current_ranker(connect())
    sql = ("SELECT pick, family, k, beta, alpha, applied FROM nnn.tune('wn', 'wn_q', 'emb', 'answer', '{16}', '{0.5,1}', "
           "metric => 'mrr', seed => 3, families => '{dn,lse}', betas => '{10}', apply => %s)")
    dry = c.execute(sql, (False,)).fetchall()
    assert [r[1] for r in dry[1:]] == ["nnn", "plain"] and dry[1][2] == 1
    pick = dry[0]
    assert pick[1] in ("dn", "lse"), dry
    done = c.execute(sql, (True,)).fetchall()
    assert [r[:5] for r in done] == [r[:5] for r in dry] and done[0][5]
    family, beta, alpha = c.execute("SELECT family, beta, alpha FROM nnn.indexes WHERE name = 'wn'").fetchone()
    assert (family, beta, alpha) == (pick[1], pick[3], pick[4])
    got = np.array([b for (b,) in c.execute("SELECT nnn_bias FROM wn_cand ORDER BY id")], dtype=np.float64)
    assert np.abs(got - naive_family_bias(family, beta)).max() <= 1e-5
    c.execute("UPDATE nnn.indexes SET family = 'nnn', k = 128, beta = NULL, alpha = NULL WHERE name = 'wn'")
    c.execute("SELECT nnn.refresh('wn')")


@pytest.mark.parametrize("call, error, message", [
    ("nnn.create_index('bad1', 'wn_cand', 'id', 'emb', 'wn_ref', 'emb', family => 'qb')", psycopg.errors.InvalidParameterValue, "unknown bias family"),
    ("nnn.create_index('bad2', 'wn_cand', 'id', 'emb', 'wn_ref', 'emb', family => 'lse')", psycopg.errors.InvalidParameterValue, "needs a positive beta"),
    ("nnn.create_index('bad3', 'wn_cand', 'id', 'emb', 'wn_ref', 'emb', beta => 5)", psycopg.errors.InvalidParameterValue, "beta is a parameter of the lse family"),
    ("nnn.evaluate('wn', 'empty_q', 'emb', 'answer')", psycopg.errors.DataException, "no row with a non-NULL embedding"),
    ("nnn.evaluate('wn', 'stray_q', 'emb', 'answer', '{16}')", psycopg.errors.DataException, "answer 99999 is not a candidate"),
    ("nnn.evaluate('wn', 'wn_q', 'emb', 'answer', '{9000}')", psycopg.errors.InvalidParameterValue, "reference set has 8000 rows"),
    ("nnn.evaluate('wn', 'wn_q', 'emb', 'answer', '{}')", psycopg.errors.InvalidParameterValue, "ks is empty"),
    ("nnn.evaluate('wn', 'wn_q', 'emb', 'answer', '{16}', '{}')", psycopg.errors.InvalidParameterValue, "alphas must be"),
    ("nnn.evaluate('wn', 'wn_q', 'emb', 'answer', '{16}', '{NaN}')", psycopg.errors.InvalidParameterValue, "alphas must be"),
    ("nnn.evaluate('wn', 'nan_q', 'emb', 'answer', '{16}')", psycopg.errors.DataException, "NaN"),
    ("nnn.evaluate('wn', 'wn_q', 'emb', 'answer', families => '{csls}')", psycopg.errors.InvalidParameterValue, "unknown family"),
    ("nnn.evaluate('wn', 'wn_q', 'emb', 'answer', families => '{lse}', betas => '{0}')", psycopg.errors.InvalidParameterValue, "betas must be"),
    ("nnn.evaluate('wn', 'wn_q', 'emb', 'nope')", psycopg.errors.UndefinedColumn, "nope"),
    ("nnn.evaluate('wn', 'wn_q', 'emb', 'emb')", psycopg.errors.DatatypeMismatch, "answer column"),
    ("nnn.evaluate('nope', 'wn_q', 'emb', 'answer')", psycopg.errors.UndefinedObject, "does not exist"),
    ("nnn.tune('wn', 'wn_q', 'emb', 'answer', metric => 'ndcg')", psycopg.errors.InvalidParameterValue, "unknown metric"),
    ("nnn.tune('wn', 'wn_q', 'emb', 'answer', tune_fraction => 1)", psycopg.errors.InvalidParameterValue, "tune_fraction"),
    ("nnn.tune('wn', 'one_q', 'emb', 'answer', '{16}')", psycopg.errors.DataException, "too few"),
    ("nnn.set_alpha('wn', 'NaN')", psycopg.errors.InvalidParameterValue, "alpha must be"),
])
def test_bad_input_is_a_clear_error(wn, connect, call, error, message):
    c = connect()
    c.execute("CREATE TEMP TABLE empty_q (answer bigint, emb real[])")
    c.execute("CREATE TEMP TABLE stray_q AS SELECT answer, emb FROM wn_q LIMIT 3")
    c.execute("INSERT INTO stray_q SELECT 99999, emb FROM wn_q LIMIT 1")
    c.execute("CREATE TEMP TABLE nan_q AS SELECT answer, emb FROM wn_q LIMIT 3")
    c.execute("UPDATE nan_q SET emb[1] = 'NaN'")
    c.execute("CREATE TEMP TABLE one_q AS SELECT answer, emb FROM wn_q LIMIT 1")
    with pytest.raises(error, match=message):
        c.execute(f"SELECT * FROM {call}")


def test_only_the_owner_applies_a_pick(wn, connect):
    c = connect()
    c.execute("DROP ROLE IF EXISTS nnn_tuner")
    c.execute("CREATE ROLE nnn_tuner")
    c.execute("GRANT SELECT ON wn_cand, wn_ref, wn_q TO nnn_tuner")
    u = connect()
    u.execute("SET ROLE nnn_tuner")
    assert len(u.execute("SELECT * FROM nnn.tune('wn', 'wn_q', 'emb', 'answer', '{16}', '{0.5}')").fetchall()) == 3
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        u.execute("SELECT * FROM nnn.tune('wn', 'wn_q', 'emb', 'answer', '{16}', '{0.5}', apply => true)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        u.execute("SELECT nnn.set_alpha('wn', 0.5)")
    u.execute("RESET ROLE")
    c.execute("REVOKE ALL ON wn_cand, wn_ref, wn_q FROM nnn_tuner")
    c.execute("DROP ROLE nnn_tuner")
