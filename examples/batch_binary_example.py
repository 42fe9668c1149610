"""Many queries in one call, sent as binary: a numpy matrix packed as little-endian float32
(4 bytes per value, no text on the client), to nnn_search_batch(name, bytea, dim, k).

Run with PG* environment variables pointing at a database where you may create tables.
"""
import numpy as np
import psycopg

with psycopg.connect(autocommit=True) as db:
    db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
    db.execute("DROP TABLE IF EXISTS exb_images, exb_captions CASCADE")
    db.execute("CREATE TABLE exb_images (id bigint PRIMARY KEY, emb real[])")
    db.execute("CREATE TABLE exb_captions (emb real[])")
    db.execute("INSERT INTO exb_images VALUES (1, '{0,1,0,0}'), (2, '{1,0,0,0}'), (3, '{0,0,1,0}')")
    db.execute("INSERT INTO exb_captions VALUES ('{0,0.6,0.8,0}'), ('{0.6,0,0.8,0}'), ('{0,0,1,0}')")
    db.execute("SELECT nnn.create_index('exb', 'exb_images', 'id', 'emb', 'exb_captions', 'emb', k => 2)")

    queries = np.array([[0, 0.6, 0.8, 0], [0.6, 0, 0.8, 0]], dtype=np.float32)
    rows = db.execute(
        "SELECT query_no, id, score FROM nnn_search_batch('exb', %s, %s, 2)",
        (queries.astype("<f4").tobytes(), queries.shape[1]),
    ).fetchall()
    for q in (1, 2):
        print(f"query {q}:", [(i, round(s, 4)) for n, i, s in rows if n == q])

    db.execute("SELECT nnn.drop_index('exb')")
    db.execute("DROP TABLE exb_images, exb_captions")
