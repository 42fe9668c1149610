#!/usr/bin/env bash
# Installs what building and testing nnn needs on Debian 12, as root, and nothing more:
# Debian packages for PostgreSQL 15 headers and bindgen, cmake and OpenBLAS for the bundled
# Faiss (feature faiss), cargo-pgrx 0.18.1, and pgrx's registration of the system PostgreSQL 15. Each step is skipped when already done.
set -euo pipefail

PGRX_VERSION=0.18.1
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export USER=${USER:-$(id -un)}

need_pkgs=()
for p in postgresql-15 postgresql-client-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo python3-venv \
         cmake g++ libopenblas-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}"
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  echo "setup: cargo install cargo-pgrx $PGRX_VERSION (takes ~14 minutes once)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

if ! grep -qs "pg15 *= *\"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  echo "setup: cargo pgrx init --pg15 $PG_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi
