"""The examples in examples/ run and print the NNN ranking worked out by hand:
bias(1) = mean(top-2 of 0.6, 0, 0) = 0.3, bias(3) = mean(1, 0.8) = 0.9, so for the query
[0, .6, .8, 0] the scores are 0.6 - 0.75*0.3 = 0.375 and 0.8 - 0.75*0.9 = 0.125."""
import os
import pathlib
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def run(name, dbname):
    env = dict(os.environ, PGDATABASE=dbname)
    out = subprocess.run([sys.executable, str(EXAMPLES / name)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_psycopg_example(dbname):
    out = run("psycopg_example.py", dbname)
    assert "nnn: [(1, 0.375), (3, 0.125)]" in out
    assert "plain: [(3, 0.8), (1, 0.6)]" in out


def test_sqlalchemy_example(dbname):
    out = run("sqlalchemy_example.py", dbname)
    assert "orm: [(1, 0.375), (3, 0.125)]" in out


def test_pgvector_psycopg_example(dbname):
    out = run("pgvector_psycopg_example.py", dbname)
    assert "all: [(1, 0.375), (4, 0.325), (3, 0.125)]" in out
    assert "shop a: [(1, 0.375), (3, 0.125)]" in out
    assert "nnn_search shop a: [(1, 0.375), (3, 0.125)]" in out


def test_pgvector_sqlalchemy_example(dbname):
    out = run("pgvector_sqlalchemy_example.py", dbname)
    assert "orm shop a: [(1, 0.375), (3, 0.125)]" in out
