#!/usr/bin/env bash
# The CUDA backend on a lent GPU machine (x86-64, no network, no cargo), in two halves:
#   scripts/gpu-check.sh build   here: builds the engine's CUDA test and benchmark binaries into
#                                gpu-bin/ (git-ignored; the device call carries it: carry ["gpu-bin"])
#   scripts/gpu-check.sh run     there: finds the CUDA libraries, runs every GPU test (the ones
#                                ignored without a GPU) and the benchmark, copies both outputs
#                                to $OUT (tests.txt, bench.txt); about 2 minutes on an H100
#                                before the batch-search lines were added (their CPU side,
#                                10,000 queries over 1,000,000 x 512, adds about 20 s on 16
#                                cores: an estimate, not measured).
# The device call: scripts/gpu-check.sh run   (timeout_s 420, carry ["gpu-bin"])
set -euo pipefail
cd "$(dirname "$0")/.."

executables() { # the executables a cargo --no-run build with JSON messages produced
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])'
}

case "${1:-}" in
build)
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/nnn/target}
  rm -rf gpu-bin && mkdir gpu-bin
  cargo test -p nnn-engine --release --features cuda --test cuda --no-run --message-format=json 2>/dev/null \
    | executables | while read -r f; do cp "$f" gpu-bin/cuda-tests; done
  cargo bench -p nnn-engine --features cuda --bench cuda --no-run --message-format=json 2>/dev/null \
    | executables | while read -r f; do cp "$f" gpu-bin/cuda-bench; done
  strip gpu-bin/*
  ls -la gpu-bin
  ;;
run)
  out=${OUT:-/tmp/nnn-gpu-out}
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/device.txt" || true
  # cudarc looks for libcublas.so / libnvrtc.so (unversioned) besides .so.12 and older: point
  # unversioned names at whatever CUDA this machine has (CUDA 13 names its files .so.13).
  libs=$(mktemp -d)
  for name in cublas cublasLt nvrtc nvrtc-builtins; do
    found=$(ldconfig -p | awk -v n="lib$name.so" '$1 ~ "^"n {print $NF; exit}')
    [ -z "$found" ] && found=$(find /usr /opt -name "lib$name.so*" -type f 2>/dev/null | sort | tail -1)
    [ -n "$found" ] && ln -sf "$found" "$libs/lib$name.so" && echo "lib$name.so -> $found" | tee -a "$out/device.txt"
  done
  export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
  export NNN_DATA=$PWD/data/wordnet-small
  status=0
  gpu-bin/cuda-tests --include-ignored --test-threads 1 --nocapture 2>&1 | tee "$out/tests.txt" || status=$?
  timeout 300 gpu-bin/cuda-bench 2>&1 | tee "$out/bench.txt" || status=$?
  exit $status
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
