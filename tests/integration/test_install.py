"""Installing nnn on a running server (scripts/install.sh, what `make install` runs) keeps the
sessions that have the library loaded: every file is renamed into place as a new file, never
rewritten in place (which crashed them and made the postmaster restart every backend)."""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEARCH = "SELECT id, score FROM nnn_search('li', '{1,0}', 2)"


def libdir():
    pg_config = os.environ.get("PG_CONFIG", "pg_config")
    return pathlib.Path(subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip())


def test_install_on_a_live_server_keeps_open_sessions(connect):
    c = connect()
    c.execute("CREATE TABLE li_img (id int PRIMARY KEY, emb real[])")
    c.execute("CREATE TABLE li_ref (emb real[])")
    c.execute("INSERT INTO li_img VALUES (1, '{1,0}'), (2, '{0,1}')")
    c.execute("INSERT INTO li_ref VALUES ('{1,0}'), ('{0.6,0.8}')")
    c.execute("SELECT nnn.create_index('li', 'li_img', 'id', 'emb', 'li_ref', 'emb', k => 1)")
    first = c.execute(SEARCH).fetchall()  # the library is loaded in this backend now
    started = c.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    so = libdir() / "nnn.so"
    inode = so.stat().st_ino
    out = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--files-only"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert so.stat().st_ino != inode  # a new file took the name; the old one is untouched
    assert c.execute(SEARCH).fetchall() == first  # the same session goes on
    assert connect().execute(SEARCH).fetchall() == first  # and a new one loads the new file
    assert c.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started  # no restart
