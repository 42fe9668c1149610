#!/usr/bin/env bash
# Installs the release build into the PostgreSQL of $PG_CONFIG without disturbing a running
# server: `cargo pgrx package` builds the files into a staging folder, then each file is copied
# beside its destination and renamed over it (a new inode), as PostgreSQL's own `install`
# does. Sessions that have the old library loaded keep their mapped copy until they end; new
# sessions load the new one. (`cargo pgrx install` rewrites nnn.so in place, which crashes
# every live session that has it loaded.)
#   scripts/install.sh               build, then place the files
#   scripts/install.sh --files-only  place the files of the last build again
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
out=${CARGO_TARGET_DIR:-target}/nnn-package
if [ "${1:-}" != --files-only ]; then
  rm -rf "$out"
  cargo pgrx package --features "${FEATURES:-}" --pg-config "$PG_CONFIG" --out-dir "$out"
fi
libdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension
place() { # place FILE DIR MODE: copy to a temporary name in DIR, then rename over the old file
  local tmp
  tmp=$(mktemp "$2/.nnn-install.XXXXXX")
  cp "$1" "$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$2/$(basename "$1")"
}
found=0
for f in "$out$libdir"/nnn.so; do
  [ -f "$f" ] && place "$f" "$libdir" 755 && found=$((found + 1))
done
for f in "$out$extdir"/nnn.control "$out$extdir"/nnn--*.sql; do
  [ -f "$f" ] && place "$f" "$extdir" 644 && found=$((found + 1))
done
if [ "$found" -lt 3 ]; then
  echo "install: no packaged build under $out (run scripts/install.sh without --files-only)" >&2
  exit 1
fi
echo "install: $found files into $libdir and $extdir"
