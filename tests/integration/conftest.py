"""Fixtures for integration tests against the throw-away cluster of scripts/test-db.sh.

Connection settings come from PGHOST/PGPORT/PGUSER (exported by scripts/cluster.sh); each
test module gets a fresh database with the extension created.
"""
import os
import pathlib
import uuid

import numpy as np
import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = ROOT / "data" / "wordnet-small"


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
    with conn.cursor().copy(f"COPY {candidates} (id, emb) FROM STDIN") as cp:
        for i, row in enumerate(cand):
            cp.write_row((i, row.tolist()))
    with conn.cursor().copy(f"COPY {reference} (emb) FROM STDIN") as cp:
        for row in ref:
            cp.write_row((row.tolist(),))
    return cand, ref
