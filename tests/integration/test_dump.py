"""pg_dump, then pg_restore into the same cluster and into a fresh one: the index, its biases,
its triggers and its Faiss structure come back usable. A fresh cluster has not reached the
source's transaction ids, so the structure's snapshot is from its future; it must still be
used (not silently replaced by scans) and still see rows written after the restore."""
import os
import subprocess
import tempfile

import numpy as np
import psycopg
import pytest

from test_server import PGBIN, _free_port, _postgres_ids


def pg(*args, **kw):
    return subprocess.run(["sudo", "-u", "postgres", *args], check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def dumped(dbname):
    """The source database with an index 'dm' (a Flat Faiss structure) over 300 rows, and its
    dump; the source cluster is first moved thousands of transactions ahead."""
    rng = np.random.default_rng(3)
    with psycopg.connect(dbname=dbname, autocommit=True) as c:
        for _ in range(3000):  # transaction ids a fresh cluster has not reached
            c.execute("SELECT pg_current_xact_id()")
        c.execute("CREATE TABLE dm (id bigint PRIMARY KEY, emb real[])")
        c.execute("CREATE TABLE dm_ref (emb real[])")
        for i, v in enumerate(rng.normal(size=(300, 8)).astype(np.float32)):
            c.execute("INSERT INTO dm VALUES (%s, %s)", (i, v.tolist()))
        for v in rng.normal(size=(100, 8)).astype(np.float32):
            c.execute("INSERT INTO dm_ref VALUES (%s)", (v.tolist(),))
        c.execute("SELECT nnn.create_index('dm', 'dm', 'id', 'emb', 'dm_ref', 'emb', k => 8, ann => 'Flat')")
    folder = tempfile.mkdtemp(prefix="nnn-dump.")  # the postgres user writes the dump
    os.chown(folder, *_postgres_ids())
    path = os.path.join(folder, "db.dump")
    pg(f"{PGBIN}/pg_dump", "-h", "127.0.0.1", "-p", os.environ["PGPORT"], "-U", "postgres", "-Fc", "-f", path, dbname)
    yield dbname, path
    subprocess.run(["rm", "-rf", folder])


QUERY = [1, 0, 0, 0, 0, 0, 0, 0]


def search(c):
    return [i for (i,) in c.execute("SELECT id FROM nnn_search('dm', %s::real[], 5)", (QUERY,))]


def check_restored(c, source_top):
    assert c.execute("SELECT name, k FROM nnn.indexes").fetchall() == [("dm", 8)]
    assert c.execute("SELECT count(*) FROM dm WHERE nnn_bias IS NULL").fetchone()[0] == 0
    assert search(c) == source_top
    assert {k for (k,) in c.execute("SELECT kind FROM nnn.cache_info()")} == {"faiss"}, "the Faiss structure is not used"
    # the triggers came back, and the structure sees a row written after the restore
    # (a copy of the best row: it ties with it, and ranks second by id)
    c.execute("INSERT INTO dm SELECT 1000, emb FROM dm WHERE id = %s", (source_top[0],))
    assert c.execute("SELECT nnn_bias IS NOT NULL FROM dm WHERE id = 1000").fetchone()[0]
    assert search(c)[:2] == [source_top[0], 1000]
    assert {k for (k,) in c.execute("SELECT kind FROM nnn.cache_info()")} == {"faiss"}
    c.execute("SET nnn.ann = off")
    exact = search(c)
    c.execute("RESET nnn.ann")
    assert search(c) == exact


def test_a_restore_into_the_same_cluster(dumped):
    source, path = dumped
    with psycopg.connect(dbname=source, autocommit=True) as c:
        top = search(c)
        c.execute("CREATE DATABASE dm_copy")
    try:
        pg(f"{PGBIN}/pg_restore", "-h", "127.0.0.1", "-p", os.environ["PGPORT"], "-U", "postgres", "-d", "dm_copy", path)
        with psycopg.connect(dbname="dm_copy", autocommit=True) as c:
            check_restored(c, top)
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True) as c:
            c.execute("DROP DATABASE dm_copy WITH (FORCE)")


def test_a_restore_into_a_fresh_cluster(dumped):
    source, path = dumped
    with psycopg.connect(dbname=source, autocommit=True) as c:
        top = search(c)
        built = c.execute("SELECT pg_snapshot_xmax(snapshot) FROM nnn.ann").fetchone()[0]
    work = tempfile.mkdtemp(prefix="nnn-restore.")
    os.chown(work, *_postgres_ids())
    data, port = os.path.join(work, "data"), str(_free_port())
    pg(f"{PGBIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    pg(f"{PGBIN}/pg_ctl", "-D", data, "-l", os.path.join(work, "log"), "-w",
       "-o", f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        with psycopg.connect(dbname="postgres", port=port, autocommit=True) as c:
            assert int(c.execute("SELECT pg_current_xact_id()").fetchone()[0]) < int(built)
            c.execute("CREATE DATABASE dm_copy")
        pg(f"{PGBIN}/pg_restore", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "dm_copy", path)
        with psycopg.connect(dbname="dm_copy", port=port, autocommit=True) as c:
            check_restored(c, top)
    finally:
        subprocess.run(["sudo", "-u", "postgres", f"{PGBIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
        subprocess.run(["rm", "-rf", work])
