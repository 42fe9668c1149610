# nnn: one entry point. `make test` is the README's test command; `make demo` its main job.
# Builds share one cargo target directory and one Python venv per machine, so a second run
# does not rebuild from scratch (a fresh clone reuses them too).

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
NNN_CACHE ?= $(HOME)/.cache/nnn
export CARGO_TARGET_DIR ?= $(NNN_CACHE)/target
export NNN_VENV ?= $(NNN_CACHE)/venv
export USER ?= root
export PATH := $(dir $(PG_CONFIG)):$(HOME)/.cargo/bin:$(PATH)
PGRX_TEST_PGDATA ?= /var/tmp/nnn-pgrx-test/data
# Cargo features every build here uses: the Faiss structures and backend (bundled Faiss,
# built once with cmake into the shared target directory) and the CUDA backend (libraries
# loaded at run time, so it builds and runs without CUDA). FEATURES= builds without.
FEATURES ?= faiss cuda
FEATURE_FLAGS = $(if $(FEATURES),--features "$(FEATURES)")
# Faiss's cmake build targets generic x86-64 unless told: give it the CPU's SIMD.
ifneq ($(shell grep -m1 -ow avx2 /proc/cpuinfo 2>/dev/null),)
export CXXFLAGS ?= -mavx2 -mfma -mf16c -mpopcnt
endif

.PHONY: setup test test-engine test-pgrx install test-db test-citus demo tune bench bench-engine bench-ann bench-certify bench-planner bench-citus bench-connections lint

## the only target that installs system packages (Debian packages, cargo-pgrx, pgvector,
## Citus for the Citus tests) and fetches what the builds need (crates, the Python venv); each
## step is skipped when done, so once it has run, `make test` needs no network
setup:
	bash scripts/setup.sh
	cargo fetch --locked
	bash scripts/pgvector.sh
	bash scripts/citus.sh
	bash scripts/venv.sh

## every test level; fails if any fails
test: setup test-engine test-pgrx install test-db test-citus
	@echo "make test: all test levels passed"

## 1. the engine, without PostgreSQL; its stand-ins for a build without Faiss and CUDA; the AVX2
## kernel tests where the CPU has AVX2, the AVX-VNNI one where it has that; NVRTC (from the
## venv) compiles the CUDA kernel
NVRTC_LIB = $(wildcard $(NNN_VENV)/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib)
test-engine:
	cargo test -p nnn-engine --release $(FEATURE_FLAGS)
	cargo test -p nnn-engine --release --lib absent
ifneq ($(shell grep -m1 -ow avx2 /proc/cpuinfo 2>/dev/null),)
	cargo test -p nnn-engine --release $(FEATURE_FLAGS) --lib -- --ignored avx2
else
	@echo "test-engine: this CPU has no AVX2: the avx2_* tests stay ignored (not run, not passed)"
endif
ifneq ($(shell grep -m1 -ow avx_vnni /proc/cpuinfo 2>/dev/null),)
	cargo test -p nnn-engine --release $(FEATURE_FLAGS) --lib -- --ignored vnni
else
	@echo "test-engine: this CPU has no AVX-VNNI: the vnni_* test stays ignored (not run, not passed)"
endif
ifneq ($(and $(shell grep -m1 -ow avx512_vnni /proc/cpuinfo 2>/dev/null),$(shell grep -m1 -ow avx512bw /proc/cpuinfo 2>/dev/null)),)
	cargo test -p nnn-engine --release $(FEATURE_FLAGS) --lib -- --ignored zmm
else
	@echo "test-engine: this CPU has no AVX-512 VNNI: the zmm_* test stays ignored (not run, not passed)"
endif
ifneq ($(findstring cuda,$(FEATURES)),)
	LD_LIBRARY_PATH=$(NVRTC_LIB) cargo test -p nnn-engine --release $(FEATURE_FLAGS) --test cuda -- --ignored nvrtc
endif

## 2. #[pg_test] functions inside a PostgreSQL that cargo-pgrx runs as the postgres user
test-pgrx:
	mkdir -p $(dir $(PGRX_TEST_PGDATA)) && chown postgres $(dir $(PGRX_TEST_PGDATA))
	cargo pgrx test pg15 --release $(FEATURE_FLAGS) --runas postgres --pgdata $(PGRX_TEST_PGDATA)

## install the release build into the system PostgreSQL 15, each file renamed into place (a
## running server's sessions keep their loaded copy)
install:
	FEATURES="$(FEATURES)" PG_CONFIG=$(PG_CONFIG) bash scripts/install.sh

## 3 + 4. pg_regress and the integration tests on a throw-away cluster
test-db:
	bash scripts/test-db.sh

## 5. tests/citus against a throw-away Citus cluster (a coordinator and two workers)
test-citus:
	bash scripts/test-citus.sh

## the demo: real data, plain vs NNN recall, on a throw-away cluster
demo: setup install
	bash scripts/demo.sh

## the k/alpha sweep on wordnet-dev from SQL: table, grid vs cell-by-cell timing, nnn.tune, and
## the plot docs/tune-wordnet-dev.png
tune: setup install
	bash scripts/tune.sh

## engine benchmark beside faiss-cpu and numpy (not a test)
bench: setup install
	bash scripts/bench.sh

bench-engine:
	cargo bench -p nnn-engine --bench engine $(FEATURE_FLAGS)

## the ORDER BY path (pgvector over [r, bias]) vs nnn_search vs nnn's Faiss HNSW (not a test)
bench-planner: setup install
	bash scripts/bench-planner.sh

## bias builds on a Citus cluster (2 workers) vs one node, and the coordinator's traffic (not a test)
bench-citus: setup install
	bash scripts/bench-citus.sh

## 32 sessions searching one index: memory per session and queries per second (not a test)
bench-connections: setup install
	bash scripts/bench-connections.sh

## Faiss structures vs exact search: recall@10 and queries per second (not a test)
bench-ann:
	cargo bench -p nnn-engine --bench ann --features faiss

## how many rows the CUDA exact TF32 mode's certificate accepts, in CPU emulation (no GPU)
bench-certify:
	cargo bench -p nnn-engine --bench certify

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --all-targets $(FEATURE_FLAGS) -- -D warnings
