# prefstore's two commands (see README.md): `make demo` and `make test`.
# Each installs the dependencies (Debian packages), configures, builds and starts what it needs.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?=
MAKEFLAGS += --no-print-directory

.PHONY: all deps configure build test test-scale test-faults demo bench soak format format-check sanitize clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DPREFSTORE_WERROR=ON $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# The whole suite against throwaway PostgreSQL clusters; ends with ctest's summary line.
test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -LE scale $(CTEST_FLAGS)

# The scale-out tests (label "scale"): a primary with a streaming standby (read-your-writes with
# consistency tokens, a standby stopped and restarted, a write refused by a standby), and a Citus
# coordinator with two workers (distributed migration, single-shard plans, the model-based
# property, a worker stopped and restarted). Builds and installs Citus first (about a minute,
# once). Prints what each test counted.
test-scale: build
	@bash scripts/install-citus.sh
	@cd $(BUILD_DIR) && ctest --output-on-failure -V -L scale $(CTEST_FLAGS)

# The long form of the fault-injection tests (ten times the cycles of `make test`'s short form):
# kill -9 of the server, cut connections, pool exhaustion, timeouts, read-only, many processes.
# Run directly (not through ctest, whose 600 s limit the long form may near); about 5 minutes.
test-faults: build
	@PREFSTORE_FAULT_LONG=1 $(BUILD_DIR)/tests/fault_test

# The main job on prefstore's own local server (./.prefstore, or $$PREFSTORE_HOME).
demo: build
	@bash scripts/demo.sh $(BUILD_DIR)/cli/prefstore

# Benchmarks against raw baselines measured in the same run (about 10 minutes); prints each
# scenario's ratio against its target and writes docs/performance.md with its plots.
# PREFSTORE_BENCH_EVENTS sets the size of the large log (default 1,000,000),
# PREFSTORE_BENCH_SECONDS the seconds per load point and side (default 3).
bench: build
	@bash scripts/bench.sh $(BUILD_DIR)

# Soak test: 10 minutes of steady load (400 sets/s, get_all at 100/s) with the asynchronous
# projectors running; writes docs/soak.md and its plots (latency, memory and lag over time).
# PREFSTORE_SOAK_SECONDS sets the length (default 600).
soak: build
	@bash scripts/soak.sh $(BUILD_DIR)

# The suite under AddressSanitizer and UndefinedBehaviorSanitizer, in its own build folder.
sanitize:
	@$(MAKE) test BUILD_DIR=build-sanitize BUILD_TYPE=Debug CMAKE_FLAGS="-DPREFSTORE_SANITIZE=ON -DPREFSTORE_BUILD_BENCH=OFF -DPREFSTORE_WERROR=OFF"

# Tracked files and new ones not yet added (but not ignored ones such as build/).
format:
	@git ls-files --cached --others --exclude-standard '*.cpp' '*.hpp' | xargs clang-format -i

format-check:
	@git ls-files --cached --others --exclude-standard '*.cpp' '*.hpp' | \
	  xargs clang-format --dry-run --Werror

clean:
	@rm -rf $(BUILD_DIR) build-sanitize
