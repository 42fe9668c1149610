"""The nnn demo: WordNet word -> definition retrieval, plain inner product vs NNN.

Loads data/wordnet-dev (2,000 definitions as candidates, 30,000 words of other synsets as the
reference set, 2,000 query words) into PostgreSQL, builds the bias column with one SQL call,
and prints recall@1/5/10 for plain and NNN-corrected search — exactly, through a Faiss HNSW
structure, and as a plain pgvector ORDER BY ... LIMIT over the augmented column [r, bias]
with an HNSW index — with the time of each step.
Connection settings come from the usual PG* environment variables.
"""
import collections
import pathlib
import time

import numpy as np
import psycopg
from copy_vectors import copy_vectors

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "wordnet-dev"


def f16(name):
    return np.fromfile(DATA / name, dtype="<f2").astype(np.float32).reshape(-1, 384)


def step(label, t0):
    print(f"  {label:<52} {time.monotonic() - t0:7.2f} s")


def recall(found, gt, n):
    return 100.0 * sum(g in f[:n] for f, g in zip(found, gt)) / len(gt)


BATCH = "SELECT * FROM nnn_search_batch('wordnet', %s, %s, 10)"


def main():
    cand, ref, queries = f16("candidates.f16"), f16("reference.f16"), f16("queries.f16")
    gt = np.fromfile(DATA / "queries_gt.i32", dtype="<i4")
    texts = [line.split("\t") for line in (DATA / "candidates.tsv").read_text().splitlines()]
    words = [line.split("\t")[0] for line in (DATA / "queries.tsv").read_text().splitlines()]
    print(f"nnn demo: {len(cand)} definitions, {len(ref)} reference words, {len(queries)} queries (d=384)")
    with psycopg.connect(autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        db.execute("DROP TABLE IF EXISTS definitions, reference_words CASCADE")
        t0 = time.monotonic()
        db.execute("CREATE TABLE definitions (id bigint PRIMARY KEY, emb real[])")
        db.execute("CREATE TABLE reference_words (emb real[])")
        copy_vectors(db, "definitions", np.arange(len(cand)), cand)
        copy_vectors(db, "reference_words", None, ref)
        step("load tables (binary COPY)", t0)

        t0 = time.monotonic()
        rows, _, ref_rows, k, secs = db.execute(
            "SELECT * FROM nnn.create_index('wordnet', 'definitions', 'id', 'emb', 'reference_words', 'emb', k => 128)"
        ).fetchone()
        step(f"nnn.create_index: bias of {rows} rows over {ref_rows} refs, k={k}", t0)

        # the queries go as packed float32 (the bytea form): no text to format and parse
        packed = (queries.astype("<f4").tobytes(), queries.shape[1])
        results = {}
        for label, alpha in (("plain (alpha = 0)", 0.0), ("NNN (alpha = 0.75)", 0.75)):
            db.execute(f"SET nnn.alpha = {alpha}")
            t0 = time.monotonic()
            found = [[] for _ in queries]
            for qn, _rank, cid, _score in db.execute(BATCH, packed):
                found[qn - 1].append(cid)
            step(f"nnn_search_batch, {label}", t0)
            results[label] = found
        db.execute("RESET nnn.alpha")

        t0 = time.monotonic()
        single = db.execute("SELECT id, score FROM nnn_search('wordnet', %s::real[], 3)", (queries[0].tolist(),)).fetchall()
        step("one nnn_search(query, 3)", t0)

        # the same NNN search through an approximate Faiss structure over [r, bias]
        t0 = time.monotonic()
        live, _, size, _ = db.execute("SELECT * FROM nnn.set_ann('wordnet', 'HNSW32')").fetchone()
        step(f"nnn.set_ann: HNSW32 over {live} rows, {size // 1024} KiB stored", t0)
        t0 = time.monotonic()
        found = [[] for _ in queries]
        for qn, _rank, cid, _score in db.execute(BATCH, packed):
            found[qn - 1].append(cid)
        step("nnn_search_batch, NNN through HNSW32", t0)
        results["NNN, Faiss HNSW32"] = found

        # NNN inside the planner: pgvector's own ORDER BY over [r, bias] with an HNSW index
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        t0 = time.monotonic()
        db.execute("SELECT nnn.set_augmented('wordnet', 'vector', 'hnsw')")
        step("nnn.set_augmented: [r, bias] column + pgvector HNSW", t0)
        db.execute("SET hnsw.ef_search = 100")
        db.execute("SET enable_seqscan = off")  # 2,000 rows: the planner would rather scan
        t0 = time.monotonic()
        sql = ("SELECT id FROM definitions ORDER BY nnn_augmented <#> nnn.query_vector(%s::real[]::vector) LIMIT 10")
        found = [[i for (i,) in db.execute(sql, (q.tolist(),))] for q in queries]
        step("2000 x ORDER BY nnn_augmented <#> ... LIMIT 10", t0)
        results["NNN, pgvector HNSW"] = found

        print("\nrecall (%)              R@1     R@5    R@10")
        for label, found in results.items():
            print(f"  {label:<20} {recall(found, gt, 1):6.2f}  {recall(found, gt, 5):6.2f}  {recall(found, gt, 10):6.2f}")
        print("  reference package (float32 data): plain 33.05 / 45.75 / 50.90, NNN 34.85 / 48.60 / 52.85")

        print("\nhubs: definitions that are the top-1 answer to the most queries")
        for label, found in results.items():
            top = collections.Counter(f[0] for f in found).most_common(1)[0]
            print(f"  {label:<20} #{top[0]} is top-1 for {top[1]} queries: {texts[top[0]][2][:60] if len(texts[top[0]]) > 2 else ''}")
        print(f"\nquery {words[0]!r}: NNN top-3 = {[i for i, _ in single]} (right answer: {gt[0]})")


if __name__ == "__main__":
    main()
