"""Under load and across servers: 16 pgbench clients searching while a writer inserts,
updates and deletes, with answers checked against exact ORDER BY nnn_score in the same
snapshot; and a streaming hot standby answering nnn_search like the primary, through the
Faiss structure it received by WAL with the rows written after it."""
import os
import random
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest

PGBIN = "/usr/lib/postgresql/15/bin"
D = 32


def vec(rng):
    return [rng.uniform(-1, 1) for _ in range(D)]


@pytest.fixture(scope="module")
def conc(dbname):
    rng = random.Random(5)
    with psycopg.connect(dbname=dbname, autocommit=True) as c:
        c.execute("CREATE TABLE conc (id bigint PRIMARY KEY, emb real[])")
        c.execute("CREATE TABLE conc_ref (emb real[])")
        c.execute("CREATE TABLE conc_q (qid int PRIMARY KEY, emb real[])")
        with c.cursor().copy("COPY conc FROM STDIN") as cp:
            for i in range(2000):
                cp.write_row((i, vec(rng)))
        with c.cursor().copy("COPY conc_ref FROM STDIN") as cp:
            for _ in range(500):
                cp.write_row((vec(rng),))
        with c.cursor().copy("COPY conc_q FROM STDIN") as cp:
            for q in range(100):
                cp.write_row((q, vec(rng)))
        c.execute("SELECT nnn.create_index('conc', 'conc', 'id', 'emb', 'conc_ref', 'emb', k => 16)")
    return dbname


def exact(conn, qid):
    return conn.execute(
        "SELECT id, nnn_score(c.emb, q.emb, c.nnn_bias) s FROM conc c, conc_q q WHERE q.qid = %s"
        " ORDER BY s DESC, id LIMIT 10", (qid,)).fetchall()


def fast(conn, qid):
    return conn.execute(
        "SELECT id, score FROM nnn_search('conc', (SELECT emb FROM conc_q WHERE qid = %s), 10)", (qid,)).fetchall()


def same(a, b):
    """Equal scores rank by rank (1e-5), and the same ids wherever scores are not tied."""
    if len(a) != len(b):
        return False
    for (ia, sa), (ib, sb) in zip(a, b):
        if abs(sa - sb) > 1e-5:
            return False
    untied = lambda r: {i for i, s in r if sum(abs(s - t) <= 1e-5 for _, t in r) == 1}
    return untied(a) == untied(b)


def test_sixteen_clients_search_while_a_writer_writes(conc, tmp_path):
    stop = time.monotonic() + 30
    errors, checked = [], [0]

    def writer():
        rng = random.Random(7)
        next_id = 10_000
        with psycopg.connect(dbname=conc, autocommit=True) as w:
            while time.monotonic() < stop:
                op = rng.random()
                try:
                    if op < 0.4:
                        w.execute("INSERT INTO conc VALUES (%s, %s::real[])", (next_id, vec(rng)))
                        next_id += 1
                    elif op < 0.8:
                        w.execute("UPDATE conc SET emb = %s::real[] WHERE id = (SELECT id FROM conc ORDER BY random() LIMIT 1)", (vec(rng),))
                    else:
                        w.execute("DELETE FROM conc WHERE id = (SELECT id FROM conc ORDER BY random() LIMIT 1)")
                except psycopg.Error as e:
                    errors.append(f"writer: {e}")

    def checker():
        rng = random.Random(9)
        with psycopg.connect(dbname=conc) as r:
            while time.monotonic() < stop:
                qid = rng.randrange(100)
                with r.transaction():
                    r.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    got, want = fast(r, qid), exact(r, qid)
                if not same(got, want):
                    errors.append(f"query {qid}: {got} != {want}")
                checked[0] += 1

    script = tmp_path / "search.sql"
    script.write_text("\\set q random(0, 99)\nSELECT count(*) FROM nnn_search('conc', (SELECT emb FROM conc_q WHERE qid = :q), 10);\n")
    threads = [threading.Thread(target=writer), threading.Thread(target=checker)]
    for t in threads:
        t.start()
    bench = subprocess.run(
        [f"{PGBIN}/pgbench", "-n", "-c", "16", "-j", "4", "-T", "30", "-f", str(script), conc],
        capture_output=True, text=True, timeout=120)
    for t in threads:
        t.join()
    assert bench.returncode == 0, bench.stderr
    assert "number of failed transactions: 0" in bench.stdout, bench.stdout
    processed = int([l for l in bench.stdout.splitlines() if "number of transactions actually processed" in l][0].split(":")[1])
    assert processed > 100
    assert errors == []
    assert checked[0] >= 20


def test_hot_standby_answers_like_the_primary(conc):
    port = int(os.environ["PGPORT"])
    with psycopg.connect(dbname=conc, autocommit=True) as p:
        p.execute("SELECT nnn.set_ann('conc', 'IVF8,Flat')")
    work = tempfile.mkdtemp(prefix="nnn-standby.")
    os.chown(work, *_postgres_ids())
    data = os.path.join(work, "data")
    sport = _free_port()
    subprocess.run(["sudo", "-u", "postgres", f"{PGBIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(port),
                    "-U", "postgres", "-D", data, "-R", "-X", "stream"], check=True, capture_output=True)
    subprocess.run(["sudo", "-u", "postgres", f"{PGBIN}/pg_ctl", "-D", data, "-l", os.path.join(work, "log"), "-w",
                    "-o", f"-p {sport} -k {work} -c listen_addresses=127.0.0.1 -c hot_standby=on", "start"],
                   check=True, capture_output=True)
    try:
        with psycopg.connect(dbname=conc, autocommit=True) as p:
            p.execute("INSERT INTO conc VALUES (99999, %s::real[])", (vec(random.Random(1)),))
            lsn = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            with psycopg.connect(dbname=conc, port=sport, autocommit=True) as s:
                assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                deadline = time.monotonic() + 30
                while s.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0] is not True:
                    assert time.monotonic() < deadline, "standby did not catch up"
                    time.sleep(0.2)
                for conn in (p, s):
                    conn.execute("SET nnn.probes = 8")  # every list: the structure is exact
                assert s.execute("SELECT count(*) FROM nnn.ann_chunks WHERE index_name = 'conc'").fetchone()[0] > 0
                for qid in range(0, 100, 7):
                    assert fast(s, qid) == fast(p, qid)
                    assert fast(s, qid) == fast(s, qid)  # the standby's cache answers the same
                    assert same(fast(s, qid), exact(p, qid))
                assert {k for (k,) in s.execute("SELECT kind FROM nnn.cache_info()")} == {"faiss"}
    finally:
        with psycopg.connect(dbname=conc, autocommit=True) as p:
            p.execute("SELECT nnn.set_ann('conc', NULL)")
        subprocess.run(["sudo", "-u", "postgres", f"{PGBIN}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
        subprocess.run(["rm", "-rf", work])


def _postgres_ids():
    import pwd
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
