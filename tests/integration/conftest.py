"""Fixtures for integration tests against the throw-away cluster of scripts/test-db.sh.

Connection settings come from PGHOST/PGPORT/PGUSER (exported by scripts/cluster.sh); each
test module gets a fresh database with the extension created.
"""
import pathlib
import sys
import uuid

import numpy as np
import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = ROOT / "data" / "wordnet-small"
sys.path.insert(0, str(ROOT / "examples"))
from copy_vectors import copy_vectors  # noqa: E402


def read_f16(name):
    return np.fromfile(SMALL / name, dtype="<f2").astype(np.float32).reshape(-1, 384)


@pytest.fixture(scope="module")
def dbname():
    name = "nnn_it_" + uuid.uuid4().hex[:8]
    with psycopg.connect(dbname="postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(dbname=name, autocommit=True) as c:
        c.execute("CREATE EXTENSION nnn")
    yield name
    with psycopg.connect(dbname="postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def connect(dbname):
    """Opens connections to the module's database and closes them after the test."""
    opened = []

    def _connect(**kw):
        kw.setdefault("autocommit", True)
        c = psycopg.connect(dbname=dbname, **kw)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()


def load_wordnet_small(conn, candidates="wn_cand", reference="wn_ref"):
    """Creates and fills the candidate (id, emb) and reference (emb) tables."""
    cand, ref = read_f16("candidates.f16"), read_f16("reference.f16")
    conn.execute(f"CREATE TABLE {candidates} (id bigint PRIMARY KEY, emb real[])")
    conn.execute(f"CREATE TABLE {reference} (emb real[])")
    copy_vectors(conn, candidates, np.arange(len(cand)), cand)
    copy_vectors(conn, reference, None, ref)
    return cand, ref
