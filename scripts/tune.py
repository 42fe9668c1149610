"""The k/alpha sweep on wordnet-dev, from SQL (make tune; make bench runs it too).

Loads data/wordnet-dev (2,000 candidates, 30,000 reference rows, 2,000 labelled queries) and:
1. nnn.evaluate: the 4 x 5 grid of k in {8, 32, 128, 512} and alpha in {0.25 .. 1.25}, plus
   plain search, DN and log-sum-exp, printed as a table;
2. the same 4 x 5 NNN cells run one by one as a user would without nnn.evaluate (a bias build
   per k, a batch search per cell, recall computed here), timed side by side with the grid
   and checked to give the same recalls;
3. nnn.tune across every family: the pick on half of the queries, reported on the other half;
4. a plot of recall@1 against alpha, one line per NNN k, the default and the tuned pick marked,
   written to docs/tune-wordnet-dev.png (or $NNN_TUNE_PNG).
Needs `make install` and a cluster (PG* variables), as scripts/tune.sh provides.
"""
import os
import pathlib
import sys
import time

import matplotlib
import numpy as np
import psycopg

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "wordnet-dev"
KS = [8, 32, 128, 512]
ALPHAS = [0.25, 0.5, 0.75, 1.0, 1.25]
PNG = pathlib.Path(os.environ.get("NNN_TUNE_PNG", ROOT / "docs" / "tune-wordnet-dev.png"))

sys.path.insert(0, str(ROOT / "examples"))
from copy_vectors import copy_vectors  # noqa: E402


def f16(name):
    return np.fromfile(DATA / name, dtype="<f2").astype(np.float32).reshape(-1, 384)


def timed(db, sql, params=None):
    t = time.perf_counter()
    rows = db.execute(sql, params).fetchall()
    return rows, time.perf_counter() - t


def arr(xs):
    return "{" + ",".join(str(x) for x in xs) + "}"


def main():
    cand, ref, queries = f16("candidates.f16"), f16("reference.f16"), f16("queries.f16")
    gt = np.fromfile(DATA / "queries_gt.i32", dtype="<i4")
    with psycopg.connect(autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        db.execute("SET nnn.progress = off")
        db.execute("DROP TABLE IF EXISTS tune_cand, tune_ref, tune_q CASCADE")
        db.execute("CREATE TABLE tune_cand (id bigint PRIMARY KEY, emb real[])")
        db.execute("CREATE TABLE tune_ref (emb real[])")
        db.execute("CREATE TABLE tune_q (answer bigint, emb real[])")
        copy_vectors(db, "tune_cand", np.arange(len(cand)), cand)
        copy_vectors(db, "tune_ref", None, ref)
        copy_vectors(db, "tune_q", gt, queries, columns=["answer", "emb"])
        db.execute("ALTER TABLE tune_q ADD COLUMN qno serial")  # numbered in load order
        db.execute("SELECT nnn.drop_index('dev') FROM nnn.indexes WHERE name = 'dev'")
        db.execute("SELECT nnn.create_index('dev', 'tune_cand', 'id', 'emb', 'tune_ref', 'emb', k => 128)")
        print(f"wordnet-dev: {len(cand)} candidates, {len(ref)} reference rows, {len(queries)} labelled queries")

        # 1. the grid, all families
        rows, _ = timed(db, "SELECT family, k, beta, alpha, recall_1, recall_5, recall_10, mrr FROM nnn.evaluate("
                        "'dev', 'tune_q', 'emb', 'answer', %s, %s, '{nnn,dn,lse}', '{10,20,50}')", (arr(KS), arr(ALPHAS)))
        print(f"\n{'family':<7} {'k':>4} {'beta':>5} {'alpha':>5} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6}")
        for f, k, b, a, r1, r5, r10, m in rows:
            print(f"{f:<7} {k or '':>4} {b or '':>5} {a:>5.2f} {r1:>6.2f} {r5:>6.2f} {r10:>6.2f} {m:>6.4f}")

        # 2. the NNN grid in one call vs cell by cell
        grid, grid_s = timed(db, "SELECT k, alpha, recall_1, recall_5, recall_10 FROM nnn.evaluate("
                             "'dev', 'tune_q', 'emb', 'answer', %s, %s) WHERE family = 'nnn'", (arr(KS), arr(ALPHAS)))
        grid = {(k, a): (r1, r5, r10) for k, a, r1, r5, r10 in grid}
        builds = searches = 0.0
        same = True
        # the queries come from the table (a client adapting 2,000 float lists per call would
        # dominate the time: that is the client's cost, not the search's)
        batch = "SELECT query_no, id FROM nnn_search_batch('dev', (SELECT array_agg(emb ORDER BY qno) FROM tune_q), 10)"
        for k in KS:
            db.execute("UPDATE nnn.indexes SET k = %s WHERE name = 'dev'", (k,))
            _, s = timed(db, "SELECT * FROM nnn.refresh('dev')")
            builds += s
            for a in ALPHAS:
                db.execute(f"SET nnn.alpha = {a}")
                hits, s = timed(db, batch)
                searches += s
                found = [[] for _ in gt]
                for qn, i in hits:
                    found[qn - 1].append(i)
                rec = [100.0 * np.mean([g in f[:n] for f, g in zip(found, gt)]) for n in (1, 5, 10)]
                same &= bool(np.allclose(rec, grid[(k, a)], atol=0.01))
        db.execute("RESET nnn.alpha")
        db.execute("UPDATE nnn.indexes SET k = 128 WHERE name = 'dev'")
        db.execute("SELECT nnn.refresh('dev')")
        cells = len(KS) * len(ALPHAS)
        print(f"\n## {len(KS)} x {len(ALPHAS)} NNN grid on wordnet-dev: one nnn.evaluate vs the cells one by one")
        print(f"  nnn.evaluate, whole grid:                   {grid_s:7.2f} s")
        print(f"  cell by cell: {len(KS)} bias builds + {cells} batch searches: {builds + searches:7.2f} s"
              f"  (builds {builds:.2f} s, searches {searches:.2f} s)")
        print(f"  ratio cell-by-cell / grid:                  {(builds + searches) / grid_s:7.1f}x")
        print(f"  same recalls in every cell (±0.01 pt):      {same}")

        # 3. tuning, across all families
        tuned, _ = timed(db, "SELECT pick, family, k, beta, alpha, tuning, recall_1, recall_5, recall_10, mrr, test_queries "
                         "FROM nnn.tune('dev', 'tune_q', 'emb', 'answer', %s, %s, seed => 0, families => '{nnn,dn,lse}', "
                         "betas => '{10,20,50}')", (arr(KS), arr(ALPHAS)))
        print(f"\n## nnn.tune (recall_1, every family, half the queries to tune, seed 0), recall on the other {tuned[0][10]}")
        print(f"  {'pick':<8} {'family':<6} {'k':>4} {'beta':>5} {'alpha':>5} {'tuning R@1':>10} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6}")
        for p, f, k, b, a, t, r1, r5, r10, m, _ in tuned:
            print(f"  {p:<8} {f:<6} {k or '':>4} {b or '':>5} {a:>5.2f} {t:>10.2f} {r1:>6.2f} {r5:>6.2f} {r10:>6.2f} {m:>6.4f}")

        # 4. the plot
        plain = next(r[4] for r in rows if r[0] == "plain")
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for k in KS:
            ax.plot(ALPHAS, [grid[(k, a)][0] for a in ALPHAS], marker="o", label=f"k = {k}")
        ax.axhline(plain, color="gray", linestyle="--", label="plain (alpha = 0)")
        ax.plot([0.75], [grid[(128, 0.75)][0]], marker="s", markersize=12, mfc="none", color="black",
                linestyle="none", label="default (k 128, alpha 0.75)")
        _, family, k, beta, alpha = tuned[0][:5]
        if family == "nnn":
            ax.plot([alpha], [grid[(k, alpha)][0]], marker="*", markersize=16, color="red", linestyle="none",
                    label=f"tuned pick (k {k}, alpha {alpha:g})")
        else:
            cell = next(r for r in rows if r[0] == family and r[2] == beta and r[3] == alpha)
            ax.plot([alpha], [cell[4]], marker="*", markersize=16, color="red", linestyle="none",
                    label=f"tuned pick ({family}{f' beta {beta:g}' if beta else ''}, alpha {alpha:g})")
        ax.set_xlabel("alpha")
        ax.set_ylabel("recall@1 (%), all 2,000 queries")
        ax.set_title("NNN on wordnet-dev: recall@1 by k and alpha (nnn.evaluate)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        PNG.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(PNG, dpi=110)
        print(f"\nplot written to {PNG}")
        db.execute("SELECT nnn.drop_index('dev', true)")
        db.execute("DROP TABLE tune_cand, tune_ref, tune_q")


if __name__ == "__main__":
    main()
