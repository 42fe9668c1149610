"""Many sessions searching one index (make bench-connections): NNN_CONN_ROWS (default
100,000) candidates of d = 384 in an nnn index, then
1. memory: NNN_CONN_SESSIONS (default 32) sessions each run one nnn_search (filling its own
   cache); each backend's private resident memory (RssAnon) is read from /proc;
2. throughput: at 1, 4, 16 and 32 sessions (each cache filled first), back-to-back
   single-query nnn_search for 5 s, once with nnn.threads = 1 and once with nnn.threads = 0
   (one per core): queries per second in steady state.
Prints two tables; asserts nothing (not a test). Needs `make install`, root (for /proc of the
postgres user's processes) and a cluster (PG* variables), as scripts/bench-connections.sh
provides.
"""
import os
import pathlib
import re
import sys
import threading
import time

import numpy as np
import psycopg

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from copy_vectors import copy_vectors  # noqa: E402

ROWS = int(os.environ.get("NNN_CONN_ROWS", "100000"))
SESSIONS = int(os.environ.get("NNN_CONN_SESSIONS", "32"))
SECONDS = 5
DIM = 384


def rss_anon_kib(pid):
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"RssAnon:\s+(\d+) kB", status).group(1))


def main():
    rng = np.random.default_rng(11)
    cand = rng.normal(size=(ROWS, DIM)).astype(np.float32)
    ref = rng.normal(size=(10_000, DIM)).astype(np.float32)
    with psycopg.connect(autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS nnn")
        db.execute("DROP TABLE IF EXISTS conn, conn_ref, conn_q CASCADE")
        db.execute("CREATE TABLE conn (id bigint PRIMARY KEY, emb real[])")
        db.execute("CREATE TABLE conn_ref (emb real[])")
        db.execute("CREATE TABLE conn_q (qid bigint PRIMARY KEY, emb real[])")
        copy_vectors(db, "conn", np.arange(ROWS), cand)
        copy_vectors(db, "conn_ref", None, ref)
        copy_vectors(db, "conn_q", np.arange(100), rng.normal(size=(100, DIM)).astype(np.float32), columns=["qid", "emb"])
        db.execute("SET nnn.progress = off")
        db.execute("SELECT nnn.create_index('conn', 'conn', 'id', 'emb', 'conn_ref', 'emb', k => 32)")
        db.execute("VACUUM ANALYZE conn")

    search = "SELECT count(*) FROM nnn_search('conn', (SELECT emb FROM conn_q WHERE qid = {q}), 10)"
    print(f"## {SESSIONS} sessions, one nnn_search each over {ROWS} x {DIM} (each fills its own cache)")
    conns = [psycopg.connect(autocommit=True) for _ in range(SESSIONS)]
    base = [rss_anon_kib(c.info.backend_pid) for c in conns]
    for i, c in enumerate(conns):
        c.execute(search.format(q=i % 100))
    grown = [rss_anon_kib(c.info.backend_pid) - b for c, b in zip(conns, base)]
    cache = conns[0].execute("SELECT bytes FROM nnn.cache_info()").fetchone()[0]
    print(f"  private memory per session after its first search: median {np.median(grown) / 1024:.0f} MiB "
          f"(cache entry {cache / 2**20:.0f} MiB); all {SESSIONS} sessions: {sum(grown) / 1024:.0f} MiB")
    threads = {len(os.listdir(f"/proc/{c.info.backend_pid}/task")) for c in conns}
    print(f"  threads per backend after a search: {sorted(threads)}")
    for c in conns:
        c.close()

    print("\n## single-query nnn_search, queries per second in steady state (every session's cache")
    print(f"## filled first; then {SECONDS} s of back-to-back searches per session)")
    print(f"  {'clients':>7} {'nnn.threads = 1':>16} {'nnn.threads = 0 (cores)':>24}")
    for clients in (1, 4, 16, 32):
        row = []
        for threads in (1, 0):
            sessions = [psycopg.connect(autocommit=True, options=f"-c nnn.threads={threads}") for _ in range(clients)]
            for i, c in enumerate(sessions):
                c.execute(search.format(q=i % 100))
            done = [0] * clients
            stop = time.monotonic() + SECONDS

            def work(i, c=None):
                c = sessions[i]
                q = i
                while time.monotonic() < stop:
                    c.execute(search.format(q=q % 100))
                    q += 7
                    done[i] += 1

            workers = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
            for t in workers:
                t.start()
            for t in workers:
                t.join()
            row.append(sum(done) / SECONDS)
            for c in sessions:
                c.close()
        print(f"  {clients:>7} {row[0]:>16.0f} {row[1]:>24.0f}")
    with psycopg.connect(autocommit=True) as db:
        db.execute("SELECT nnn.drop_index('conn')")
        db.execute("DROP TABLE conn, conn_ref, conn_q")


if __name__ == "__main__":
    main()
