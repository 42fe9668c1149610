"""nnn.backend: auto, cpu, cuda and faiss compute the same biases; without a GPU, 'cuda' is a
clear error and 'auto' runs on the CPU (with one, 'cuda' must equal the CPU)."""
import ctypes.util
import os

import psycopg
import pytest


@pytest.fixture
def tables(connect):
    c = connect()
    c.execute("DROP TABLE IF EXISTS be_img, be_ref")
    c.execute("CREATE TABLE be_img (id int PRIMARY KEY, emb real[])")
    c.execute("CREATE TABLE be_ref (emb real[])")
    c.execute("INSERT INTO be_img SELECT g, ARRAY(SELECT sin(g * j) FROM generate_series(1, 16) j)::real[] FROM generate_series(1, 300) g")
    c.execute("INSERT INTO be_ref SELECT ARRAY(SELECT cos(g * j) FROM generate_series(1, 16) j)::real[] FROM generate_series(1, 500) g")
    c.execute("SELECT nnn.build_bias('be_img', 'emb', 'be_ref', 'emb', 'cpu_bias', k => 8)")
    return c


def bias_with(c, backend, column):
    c.execute("SELECT set_config('nnn.backend', %s, false)", (backend,))
    c.execute(f"SELECT nnn.build_bias('be_img', 'emb', 'be_ref', 'emb', '{column}', k => 8)")
    return c.execute(f"SELECT max(abs({column} - cpu_bias)) FROM be_img").fetchone()[0]


def test_auto_and_faiss_equal_the_cpu(tables):
    assert bias_with(tables, "auto", "auto_bias") < 1e-5
    assert bias_with(tables, "faiss", "faiss_bias") < 1e-5


def test_cuda_is_a_clear_error_without_a_gpu_and_equals_the_cpu_with_one(tables):
    if ctypes.util.find_library("cuda") is None:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="CUDA is not available"):
            bias_with(tables, "cuda", "gpu_bias")
        assert tables.execute("SELECT 1").fetchone()[0] == 1  # the session goes on
    else:
        assert bias_with(tables, "cuda", "gpu_bias") < 1e-5


def test_tf32_is_an_opt_in_that_never_reaches_cpu_work(tables):
    """nnn.cuda_tf32 is off by default and only changes GPU products: with it on, CPU builds
    give the default build's biases bit for bit (a TF32 product would move them by up to 2^-9;
    the GPU side of the bound is tf32_mode_stays_within_its_error_bound in scripts/gpu-check.sh)."""
    assert tables.execute("SHOW nnn.cuda_tf32").fetchone()[0] == "off"
    tables.execute("SET nnn.cuda_tf32 = on")
    tables.execute("SET nnn.backend = 'cpu'")
    tables.execute("SELECT nnn.build_bias('be_img', 'emb', 'be_ref', 'emb', 'tf32_bias', k => 8)")
    differ = tables.execute("SELECT count(*) FROM be_img WHERE tf32_bias IS DISTINCT FROM cpu_bias").fetchone()[0]
    assert differ == 0


def test_loading_nnn_leaves_the_session_without_extra_threads(connect):
    """OpenBLAS (linked by Faiss) starts threads as it loads, which would spin for about 0.1 s
    of CPU beside the session's first search or build; nnn stops them when it loads. (The
    server runs on this machine: its backend's threads are in /proc.)"""
    c = connect()
    pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    c.execute("LOAD 'nnn'")
    assert len(os.listdir(f"/proc/{pid}/task")) == 1
