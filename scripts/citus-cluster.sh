#!/usr/bin/env bash
# A throw-away Citus cluster for tests: a coordinator and two workers, each a PostgreSQL 15
# with shared_preload_libraries = citus on a free loopback port, run as the postgres user.
# Source it, then:
#   citus_start DB   start the three nodes, create database DB on each with the citus
#                    extension, register the workers; exports PG* for the coordinator and
#                    NNN_CITUS_WORKER_PORTS
#   citus_stop       stop every node and delete their directories (safe twice; use in a trap)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

_citus_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

citus_start() {
  local db=$1 node port ports=()
  NNN_CITUS_DIR=$(mktemp -d /tmp/nnn-citus.XXXXXX)
  chown postgres "$NNN_CITUS_DIR"
  for node in coordinator worker1 worker2; do
    port=$(_citus_port)
    ports+=("$port")
    sudo -u postgres "$PGBIN/initdb" -D "$NNN_CITUS_DIR/$node" -A trust -U postgres --no-sync >"$NNN_CITUS_DIR/$node.initdb.log" 2>&1 \
      || { cat "$NNN_CITUS_DIR/$node.initdb.log"; return 1; }
    sudo -u postgres RUST_BACKTRACE=1 "$PGBIN/pg_ctl" -D "$NNN_CITUS_DIR/$node" -l "$NNN_CITUS_DIR/$node.log" -w \
      -o "-p $port -k $NNN_CITUS_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c shared_preload_libraries=citus -c max_prepared_transactions=100 -c track_functions=all ${NNN_PG_OPTIONS:-}" \
      start >/dev/null || { cat "$NNN_CITUS_DIR/$node.log"; return 1; }
    sudo -u postgres "$PGBIN/psql" -qX -h 127.0.0.1 -p "$port" -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
    sudo -u postgres "$PGBIN/psql" -qX -h 127.0.0.1 -p "$port" -d "$db" -c "CREATE EXTENSION citus" >/dev/null
  done
  sudo -u postgres "$PGBIN/psql" -qX -h 127.0.0.1 -p "${ports[0]}" -d "$db" -v ON_ERROR_STOP=1 \
    -c "SELECT citus_set_coordinator_host('127.0.0.1', ${ports[0]})" \
    -c "SELECT citus_add_node('127.0.0.1', ${ports[1]})" \
    -c "SELECT citus_add_node('127.0.0.1', ${ports[2]})" >/dev/null
  export NNN_CITUS_DIR PGHOST=127.0.0.1 PGPORT=${ports[0]} PGUSER=postgres PGDATABASE=$db
  export NNN_CITUS_WORKER_PORTS="${ports[1]} ${ports[2]}"
  echo "citus: coordinator on port ${ports[0]}, workers on ${ports[1]} and ${ports[2]} in $NNN_CITUS_DIR"
}

citus_stop() {
  local node
  if [ -n "${NNN_CITUS_DIR:-}" ] && [ -d "$NNN_CITUS_DIR" ]; then
    for node in coordinator worker1 worker2; do
      [ -d "$NNN_CITUS_DIR/$node" ] && sudo -u postgres "$PGBIN/pg_ctl" -D "$NNN_CITUS_DIR/$node" -m fast -w stop >/dev/null 2>&1
    done
    rm -rf "$NNN_CITUS_DIR"
    echo "citus: stopped"
  fi
  NNN_CITUS_DIR=
}
