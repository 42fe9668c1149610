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


def test_the_tuning_sweep_prints_golden_cells_and_writes_its_plot(dbname, tmp_path):
    """scripts/tune.py (make tune): the grid's plain and default cells are the reference
    package's wordnet-dev recalls, the cell-by-cell runs agree with the grid, and the PNG exists."""
    png = tmp_path / "tune.png"
    env = dict(os.environ, PGDATABASE=dbname, NNN_TUNE_PNG=str(png))
    script = EXAMPLES.parent / "scripts" / "tune.py"
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.split()[:5] == ["plain", "0.00", "33.05", "45.75", "50.90"] for line in lines), out.stdout
    assert any(line.split()[:6] == ["nnn", "128", "0.75", "34.85", "48.60", "52.85"] for line in lines), out.stdout
    assert "same recalls in every cell (±0.01 pt):      True" in out.stdout
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batch_binary_example(dbname):
    # the psycopg example's query [0, .6, .8, 0] and its mirror [.6, 0, .8, 0]:
    # 0.6 - 0.75 * 0.3 = 0.375 for the first's own image, 0.8 - 0.75 * 0.9 = 0.125 for image 3
    out = run("batch_binary_example.py", dbname)
    assert "query 1: [(1, 0.375), (3, 0.125)]" in out
    assert "query 2: [(2, 0.375), (3, 0.125)]" in out


def test_the_demo_prints_the_reference_package_s_recalls(dbname):
    """examples/demo.py (make demo): its exact lines are the reference package's wordnet-dev
    recalls (plain and NNN), and the approximate ones (Faiss HNSW32, pgvector HNSW) within one
    point of NNN's."""
    out = run("demo.py", dbname)
    table = out.split("recall (%)")[1].split("\n\n")[0].splitlines()[1:]  # up to the blank line
    recalls = {" ".join(w[:-3]): [float(x) for x in w[-3:]] for w in map(str.split, table) if w[0] != "reference"}
    assert recalls["plain (alpha = 0)"] == [33.05, 45.75, 50.90], recalls
    assert recalls["NNN (alpha = 0.75)"] == [34.85, 48.60, 52.85], recalls
    for approximate in ("NNN, Faiss HNSW32", "NNN, pgvector HNSW"):
        assert all(abs(a - e) <= 1.0 for a, e in zip(recalls[approximate], [34.85, 48.60, 52.85])), recalls
