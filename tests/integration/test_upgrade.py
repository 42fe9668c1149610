"""ALTER EXTENSION nnn UPDATE on a database made by the released 0.1.0 install script
(tests/upgrade/nnn--0.1.0.sql): its index, biases, triggers, change log and Faiss structure
keep working with the new library before the update (the window between `make install` and
the UPDATE) and carry over through it, and the new features work after it."""
import os
import pathlib
import shutil
import subprocess
import uuid

import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def old_db():
    pg_config = os.environ.get("PG_CONFIG", "pg_config")
    extdir = pathlib.Path(subprocess.run([pg_config, "--sharedir"], capture_output=True, text=True, check=True).stdout.strip()) / "extension"
    script = extdir / "nnn--0.1.0.sql"
    kept = script.read_bytes() if script.exists() else None
    shutil.copyfile(ROOT / "tests" / "upgrade" / "nnn--0.1.0.sql", script)
    name = "nnn_up_" + uuid.uuid4().hex[:8]
    with psycopg.connect(dbname="postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if kept is None:
            script.unlink()
        else:
            script.write_bytes(kept)


SEARCH = "SELECT id FROM nnn_search('up', '{0,0,1}', 3)"


def test_update_from_0_1_0_carries_everything_forward(old_db):
    with psycopg.connect(dbname=old_db, autocommit=True) as c:
        c.execute("CREATE EXTENSION nnn VERSION '0.1.0'")
        c.execute("CREATE TABLE up_img (id int PRIMARY KEY, emb real[])")
        c.execute("CREATE TABLE up_ref (emb real[])")
        c.execute("INSERT INTO up_img VALUES (1, '{1,0,0}'), (2, '{0,1,0}'), (3, '{0,0,1}')")
        c.execute("INSERT INTO up_ref VALUES ('{1,0,0}'), ('{0,1,0}'), ('{0.5,0.5,0}')")
        c.execute("SELECT nnn.create_index('up', 'up_img', 'id', 'emb', 'up_ref', 'emb', k => 1, ann => 'Flat')")
        # before the update: the new library on the 0.1.0 catalog searches and keeps biases fresh
        c.execute("INSERT INTO up_img VALUES (4, '{0,0,2}')")
        assert [i for (i,) in c.execute(SEARCH)] == [4, 3, 1]
        bias = c.execute("SELECT nnn_bias FROM up_img WHERE id = 4").fetchone()[0]
        c.execute("ALTER EXTENSION nnn UPDATE")
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'nnn'").fetchone()[0] == "0.2.0"
    with psycopg.connect(dbname=old_db, autocommit=True) as c:  # a new session after the update
        assert c.execute("SELECT name, k, augmented_column FROM nnn.indexes").fetchall() == [("up", 1, None)]
        assert c.execute("SELECT factory, live_rows FROM nnn.ann").fetchall() == [("Flat", 3)]
        assert c.execute("SELECT nnn_bias FROM up_img WHERE id = 4").fetchone()[0] == bias
        assert [i for (i,) in c.execute(SEARCH)] == [4, 3, 1]  # the Faiss structure and the change log
        c.execute("DELETE FROM up_img WHERE id = 4")
        assert [i for (i,) in c.execute(SEARCH)] == [3, 1, 2]
        # what 0.2.0 adds
        assert [i for (i,) in c.execute("SELECT id FROM nnn_search('up', '{0,0,1}', 3, '{1,2}')")] == [1, 2]
        assert c.execute("SELECT nnn.query_vector('{1,2}'::real[], 0.5)").fetchone()[0] == [1.0, 2.0, -0.5]
        made = c.execute("SELECT * FROM nnn.create_index('up2', 'up_img', 'id', 'emb', 'up_ref', 'emb', k => 1, bias_column => 'b2')").fetchone()
        assert made[0] == 3
        # the change log takes entries from the table's writers only
        c.execute("CREATE ROLE nnn_up_stranger")
        try:
            c.execute("SET ROLE nnn_up_stranger")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("INSERT INTO nnn.changes (index_name, id) VALUES ('up', NULL)")
        finally:
            c.execute("RESET ROLE")
            c.execute("DROP ROLE nnn_up_stranger")


SURFACE = """
    SELECT 'function ' || p.oid::regprocedure::text || ' -> ' || pg_catalog.pg_get_function_result(p.oid)
           || ' ' || p.provolatile::text || p.proparallel::text || p.proisstrict::text
    FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid
    WHERE d.refclassid = 'pg_extension'::regclass AND d.classid = 'pg_proc'::regclass
      AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'nnn')
    UNION ALL
    SELECT 'column ' || a.attrelid::regclass::text || '.' || a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
    FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    WHERE c.relnamespace = 'nnn'::regnamespace AND c.relkind IN ('r', 'i') AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY 1"""


def test_the_updated_surface_equals_a_fresh_install(old_db):
    """Every function (signature, result, volatility, parallel safety, strictness) and every
    catalog column of a fresh 0.2.0 install, and nothing else, after the update from 0.1.0."""
    with psycopg.connect(dbname=old_db, autocommit=True) as c:
        c.execute("CREATE EXTENSION nnn VERSION '0.1.0'")
        c.execute("ALTER EXTENSION nnn UPDATE")
        updated = [r for (r,) in c.execute(SURFACE)]
    fresh = "nnn_fresh_" + uuid.uuid4().hex[:8]
    with psycopg.connect(dbname="postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{fresh}"')
    try:
        with psycopg.connect(dbname=fresh, autocommit=True) as c:
            c.execute("CREATE EXTENSION nnn")
            installed = [r for (r,) in c.execute(SURFACE)]
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE "{fresh}" WITH (FORCE)')
    assert any("nnn.tune(" in r for r in installed)
    assert updated == installed
