#!/usr/bin/env bash
# Throw-away PostgreSQL 15 clusters for tests and the demo. Source it, then:
#   cluster_start   initdb in a new temporary directory, start on a free local port, export PG*
#   cluster_stop    stop it and delete the directory (safe to call twice; use in a trap)
# Tests never touch a cluster they did not create.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

cluster_start() {
  NNN_PGDIR=$(mktemp -d /tmp/nnn-pg.XXXXXX)
  chown postgres "$NNN_PGDIR"
  PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  sudo -u postgres "$PGBIN/initdb" -D "$NNN_PGDIR/data" -A trust -U postgres --no-sync >"$NNN_PGDIR/initdb.log" 2>&1 \
    || { cat "$NNN_PGDIR/initdb.log"; return 1; }
  # RUST_BACKTRACE=1: the tests check that no Rust backtrace reaches an error's DETAIL even then
  sudo -u postgres RUST_BACKTRACE=1 "$PGBIN/pg_ctl" -D "$NNN_PGDIR/data" -l "$NNN_PGDIR/server.log" -w \
    -o "-p $PGPORT -k $NNN_PGDIR -c listen_addresses=127.0.0.1 -c fsync=off ${NNN_PG_OPTIONS:-}" start >/dev/null \
    || { cat "$NNN_PGDIR/server.log"; return 1; }
  export NNN_PGDIR PGPORT PGHOST=127.0.0.1 PGUSER=postgres PGDATABASE=postgres
  echo "cluster: started on port $PGPORT in $NNN_PGDIR"
}

cluster_stop() {
  if [ -n "${NNN_PGDIR:-}" ] && [ -d "$NNN_PGDIR/data" ]; then
    sudo -u postgres "$PGBIN/pg_ctl" -D "$NNN_PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$NNN_PGDIR"
    echo "cluster: stopped"
  fi
  NNN_PGDIR=
}
