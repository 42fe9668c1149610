"""nnn_search answers as of the caller's snapshot while other sessions write: scanning every
row (no Faiss structure), and through Faiss structures, whose proposals are re-read under the
caller's snapshot and whose missing rows come from the change log."""
import psycopg
import pytest


@pytest.fixture(params=[None, "Flat", "HNSW8"], ids=["scan", "faiss-flat", "faiss-hnsw"])
def toy(connect, request):
    c = connect()
    c.execute("DROP TABLE IF EXISTS mv_img, mv_ref CASCADE")
    c.execute("CREATE TABLE mv_img (id int PRIMARY KEY, emb real[])")
    c.execute("CREATE TABLE mv_ref (emb real[])")
    c.execute("INSERT INTO mv_img VALUES (1, '{1,0,0}'), (2, '{0,1,0}'), (3, '{0,0,1}')")
    c.execute("INSERT INTO mv_ref VALUES ('{1,0,0}'), ('{0,1,0}'), ('{0.5,0.5,0}')")
    c.execute("SELECT nnn.create_index('mv', 'mv_img', 'id', 'emb', 'mv_ref', 'emb', k => 1, ann => %s)", (request.param,))
    assert c.execute("SELECT count(*) FROM nnn.ann WHERE index_name = 'mv'").fetchone()[0] == (request.param is not None)
    return c


def ids(conn, q="{0,0,1}", k=10):
    return [i for (i,) in conn.execute("SELECT id FROM nnn_search('mv', %s::real[], %s)", (q, k))]


def test_other_sessions_uncommitted_changes_are_invisible(toy, connect):
    writer = connect(autocommit=False)
    writer.execute("INSERT INTO mv_img VALUES (4, '{0,0,2}')")
    writer.execute("DELETE FROM mv_img WHERE id = 3")
    assert ids(toy)[0] == 3 and 4 not in ids(toy)
    writer.commit()
    assert ids(toy)[0] == 4 and 3 not in ids(toy)


def test_rollback_leaves_no_trace(toy, connect):
    writer = connect(autocommit=False)
    writer.execute("INSERT INTO mv_img VALUES (5, '{0,0,3}')")
    writer.rollback()
    assert 5 not in ids(toy)


def test_committed_update_is_never_stale(toy, connect):
    writer = connect()
    before = toy.execute("SELECT score FROM nnn_search('mv', '{0,0,1}', 1)").fetchone()[0]
    writer.execute("UPDATE mv_img SET emb = '{0,0,5}' WHERE id = 3")
    after = toy.execute("SELECT id, score FROM nnn_search('mv', '{0,0,1}', 1)").fetchone()
    assert after[0] == 3 and after[1] > before + 3


def test_repeatable_read_keeps_its_snapshot(toy, connect):
    reader = connect(autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    first = ids(reader)
    writer = connect()
    writer.execute("INSERT INTO mv_img VALUES (6, '{0,0,9}')")
    assert ids(reader) == first
    reader.commit()
    assert ids(reader)[0] == 6


def test_own_uncommitted_rows_count(toy, connect):
    me = connect(autocommit=False)
    me.execute("INSERT INTO mv_img VALUES (7, '{0,0,7}')")
    assert ids(me)[0] == 7
    assert 7 not in ids(toy)
    me.rollback()


def test_structure_rewrites_respect_snapshots(toy, connect):
    """A reader keeps its answers while the owner merges changes and retrains."""
    writer = connect()
    writer.execute("INSERT INTO mv_img VALUES (8, '{0,0,8}')")
    reader = connect(autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    first = ids(reader)
    assert first[0] == 8
    if toy.execute("SELECT count(*) FROM nnn.ann WHERE index_name = 'mv'").fetchone()[0]:
        writer.execute("SELECT nnn.merge_changes('mv')")
    writer.execute("DELETE FROM mv_img WHERE id = 8")
    writer.execute("SELECT nnn.refresh('mv')")
    assert ids(reader) == first
    reader.commit()
    assert 8 not in ids(reader)


def test_a_session_plans_its_per_search_queries_again_after_ddl(dbname):
    """The queries every search runs (the index's definition, the change log since the cache)
    are planned once per session (src/postgres/plans.rs). PostgreSQL plans them again when
    what they read is made anew: the extension dropped and created again in the same session,
    then a write that the cached rows must follow."""
    name = dbname + "_ddl"
    with psycopg.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(dbname=name, autocommit=True) as c:

            def make():
                c.execute("CREATE EXTENSION nnn")
                c.execute("SELECT nnn.create_index('kp', 'kp', 'id', 'emb', 'kp_ref', 'emb', k => 1)")

            def search():
                return [i for (i,) in c.execute("SELECT id FROM nnn_search('kp', '{0,0,1}', 3)")]

            c.execute("CREATE TABLE kp (id int PRIMARY KEY, emb real[])")
            c.execute("CREATE TABLE kp_ref (emb real[])")
            c.execute("INSERT INTO kp VALUES (1, '{1,0,0}'), (2, '{0,1,0}'), (3, '{0,0,1}')")
            c.execute("INSERT INTO kp_ref VALUES ('{1,0,0}'), ('{0,1,0}')")
            make()
            # biases 1, 1, 0: scores -0.75, -0.75, 1
            assert search() == [3, 1, 2]
            c.execute("DROP EXTENSION nnn CASCADE")
            c.execute("ALTER TABLE kp DROP COLUMN nnn_bias")
            make()
            assert search() == [3, 1, 2]
            c.execute("UPDATE kp SET emb = '{0,0,-1}' WHERE id = 3")
            assert search() == [1, 2, 3]
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
