"""nnn from psycopg: build an index, search with NNN, change alpha per transaction.

Run with PG* environment variables pointing at a database where you may create tables.
"""
import psycopg

with psycopg.connect(autocommit=True) as db:
    db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
    db.execute("DROP TABLE IF EXISTS ex_images, ex_captions CASCADE")
    db.execute("CREATE TABLE ex_images (id bigint PRIMARY KEY, emb real[])")
    db.execute("CREATE TABLE ex_captions (emb real[])")
    db.execute("INSERT INTO ex_images VALUES (1, '{0,1,0,0}'), (2, '{1,0,0,0}'), (3, '{0,0,1,0}')")
    db.execute("INSERT INTO ex_captions VALUES ('{0,0.6,0.8,0}'), ('{0.6,0,0.8,0}'), ('{0,0,1,0}')")
    db.execute("SELECT nnn.create_index('ex', 'ex_images', 'id', 'emb', 'ex_captions', 'emb', k => 2)")

    query = [0.0, 0.6, 0.8, 0.0]  # Python floats travel as float8[]: cast to real[]
    rows = db.execute("SELECT id, score FROM nnn_search('ex', %s::real[], 2)", (query,)).fetchall()
    print("nnn:", [(i, round(s, 4)) for i, s in rows])

    with db.transaction():
        db.execute("SET LOCAL nnn.alpha = 0")
        rows = db.execute("SELECT id, score FROM nnn_search('ex', %s::real[], 2)", (query,)).fetchall()
        print("plain:", [(i, round(s, 4)) for i, s in rows])

    db.execute("SELECT nnn.drop_index('ex')")
    db.execute("DROP TABLE ex_images, ex_captions")
