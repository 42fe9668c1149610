"""nnn with pgvector from psycopg: NNN as a plain pgvector ORDER BY, with a WHERE filter.

nnn.create_index(..., augmented => 'vector', augmented_index => 'hnsw') adds a stored
generated column nnn_augmented = [embedding, bias] and an HNSW index over it; the query side is
[q, -alpha] (nnn.query_vector), so `nnn_augmented <#> nnn.query_vector(q)` is -(q.r - alpha*bias).
Vectors travel as numpy arrays through pgvector-python's register_vector.
Run with PG* environment variables pointing at a database where you may create tables.
"""
import numpy as np
import psycopg
from pgvector.psycopg import register_vector

with psycopg.connect(autocommit=True) as db:
    db.execute("CREATE EXTENSION IF NOT EXISTS vector")
    db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
    register_vector(db)
    db.execute("DROP TABLE IF EXISTS pv_images, pv_captions CASCADE")
    db.execute("CREATE TABLE pv_images (id bigint PRIMARY KEY, emb vector(4), shop text)")
    db.execute("CREATE TABLE pv_captions (emb vector(4))")
    images = [(1, [0, 1, 0, 0], "a"), (2, [1, 0, 0, 0], "b"), (3, [0, 0, 1, 0], "a"), (4, [0, 0.6, 0.8, 0], "b")]
    for i, emb, shop in images:
        db.execute("INSERT INTO pv_images VALUES (%s, %s, %s)", (i, np.array(emb, dtype=np.float32), shop))
    for emb in ([0, 0.6, 0.8, 0], [0.6, 0, 0.8, 0], [0, 0, 1, 0]):
        db.execute("INSERT INTO pv_captions VALUES (%s)", (np.array(emb, dtype=np.float32),))
    db.execute("""SELECT nnn.create_index('pv_ex', 'pv_images', 'id', 'emb', 'pv_captions', 'emb', k => 2,
                                          augmented => 'vector', augmented_index => 'hnsw')""")

    q = np.array([0, 0.6, 0.8, 0], dtype=np.float32)
    search = """SELECT id, -(nnn_augmented <#> nnn.query_vector(%(q)s)) AS score FROM pv_images
                WHERE shop = ANY(%(shops)s) ORDER BY nnn_augmented <#> nnn.query_vector(%(q)s) LIMIT 3"""
    rows = db.execute(search, {"q": q, "shops": ["a", "b"]}).fetchall()
    print("all:", [(i, round(s, 4)) for i, s in rows])
    rows = db.execute(search, {"q": q, "shops": ["a"]}).fetchall()
    print("shop a:", [(i, round(s, 4)) for i, s in rows])
    # the same ranking from nnn's own engine, restricted to the rows of a subquery
    rows = db.execute("""SELECT id, score FROM nnn_search('pv_ex', %s, 3,
                           (SELECT array_agg(id) FROM pv_images WHERE shop = 'a'))""", (q,)).fetchall()
    print("nnn_search shop a:", [(i, round(s, 4)) for i, s in rows])

    db.execute("SELECT nnn.drop_index('pv_ex')")
    db.execute("DROP TABLE pv_images, pv_captions")
