"""What the change-log check costs a cached nnn_search (make bench runs it; not a test):
10,000 candidates x 64, a session's cache filled, then the index's nnn.changes holding 0,
10,000 or 1,000,000 entries that the cache's snapshot already sees, live or deleted (pruned,
not yet vacuumed); median server time of nnn_search(q, 10) over 30 calls for each.
Prints a table; asserts nothing. Needs `make install` and a cluster (PG* variables)."""
import statistics

import numpy as np
import psycopg


def server(db, sql, params):
    plan = db.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, params).fetchone()[0]
    return plan[0]["Execution Time"]


def main():
    with psycopg.connect(autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        db.execute("DROP TABLE IF EXISTS cl_img, cl_ref CASCADE")
        db.execute("CREATE TABLE cl_img (id bigint PRIMARY KEY, emb real[])")
        db.execute("CREATE TABLE cl_ref (emb real[])")
        db.execute("INSERT INTO cl_img SELECT g, ARRAY(SELECT random()::real FROM generate_series(1, 64) WHERE g > 0) FROM generate_series(1, 10000) g")
        db.execute("INSERT INTO cl_ref SELECT emb FROM cl_img WHERE id <= 1000")
        db.execute("SELECT nnn.create_index('cl', 'cl_img', 'id', 'emb', 'cl_ref', 'emb', k => 16)")
        q = (np.random.default_rng(3).random(64, dtype=np.float32)).tolist()
        sql = "SELECT * FROM nnn_search('cl', %s::real[], 10)"
        print(f"\n{'nnn.changes entries (seen by the cache)':<44} {'live ms':>9} {'deleted ms':>11}")
        for n in (0, 10_000, 1_000_000):
            db.execute("SELECT nnn.prune_changes('cl')")
            db.execute("VACUUM nnn.changes")
            if n:
                db.execute(f"INSERT INTO nnn.changes (index_name, id) SELECT 'cl', g % 10000 + 1 FROM generate_series(1, {n}) g")
            row = []
            for deleted in (False, True):
                if deleted:
                    db.execute("DELETE FROM nnn.changes WHERE index_name = 'cl'")
                with psycopg.connect(autocommit=True) as s:  # a new session: fills its cache now
                    s.execute(sql, (q,)).fetchall()
                    row.append(statistics.median(server(s, sql, (q,)) for _ in range(30)))
            print(f"{n:<44} {row[0]:>9.2f} {row[1]:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
