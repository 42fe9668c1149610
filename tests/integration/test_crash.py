"""Killing a backend (SIGKILL) in the middle of a bias build: the server recovers by itself and
the table has no partial biases (the column the build added is gone with its transaction).
The kill comes from the build's own first progress NOTICE (sent after 2 s of engine work), so
it lands mid-build on any machine fast or slow; the build is sized (3 TFLOP) to still be
running then on machines far faster than this one."""
import os
import signal
import time

import psycopg


def wait_for_server(dbname, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        try:
            with psycopg.connect(dbname=dbname, connect_timeout=2) as c:
                return c.execute("SELECT 1").fetchone()[0]
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_sigkill_during_a_build_leaves_no_partial_bias(dbname):
    with psycopg.connect(dbname=dbname, autocommit=True) as c:
        c.execute("CREATE TABLE kc (id int PRIMARY KEY, emb real[])")
        c.execute("CREATE TABLE kr (emb real[])")
        c.execute("INSERT INTO kc SELECT g, ARRAY(SELECT random()::real FROM generate_series(1, 64) WHERE g > 0) FROM generate_series(1, 20000) g")
        c.execute("INSERT INTO kr SELECT ARRAY(SELECT random()::real FROM generate_series(1, 64) WHERE g > 0) FROM generate_series(1, 200000) g")
        c.execute("INSERT INTO kr SELECT emb FROM kr, generate_series(1, 5)")
        c.execute("CHECKPOINT")
    victim = psycopg.connect(dbname=dbname, autocommit=True)
    pid = victim.info.backend_pid
    outcome, notices = [], []

    def kill_on_progress(notice):
        notices.append(notice.message_primary)
        if len(notices) == 1:
            os.kill(pid, signal.SIGKILL)

    victim.add_notice_handler(kill_on_progress)

    try:
        victim.execute("SELECT nnn.build_bias('kc', 'emb', 'kr', 'emb')")
        outcome.append("finished")
    except psycopg.Error as e:
        outcome.append(type(e).__name__)
    assert notices and "bias of kc" in notices[0], notices
    assert outcome and outcome[0] != "finished", outcome
    assert wait_for_server(dbname) == 1
    with psycopg.connect(dbname=dbname) as c:
        assert c.execute("SELECT count(*) FROM kc").fetchone()[0] == 20000
        cols = c.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'kc'::regclass AND attname = 'nnn_bias'").fetchone()[0]
        assert cols == 0
