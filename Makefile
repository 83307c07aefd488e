# millstream — developer entry points. `make test` and `make demo` work from a fresh clone
# on a machine with python3 ≥ 3.11 (and, for the venv, its venv/ensurepip module).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
SERVICES := scripts/services.sh
# The interpreter for the venv: PYTHON if given, else the first of python3, python3.13,
# python3.12, python3.11 on PATH that is Python ≥ 3.11.
PYTHON   ?=
# Soak tests (marker `slow`) run in `make test` too, but briefly; `make reliability` runs
# them at their own default length.
SOAK_SECONDS ?= 20
PYTEST_ARGS  ?=

# Start the external services the tests need (scripts/services.sh, if present), run a
# command, and stop the services whatever happened — also on Ctrl-C.
define with_services
	if [[ -f $(SERVICES) ]]; then \
	  trap 'bash $(SERVICES) stop' EXIT; \
	  bash $(SERVICES) start; \
	fi; \
	$(1)
endef

.PHONY: help venv test newest-venv test-newest demo bench bench-peers reliability lint docs clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

venv: $(STAMP)  ## create .venv with millstream[dev] and apps/video[test] (again when a pyproject.toml changed)

$(STAMP): pyproject.toml apps/video/pyproject.toml
	@ok() { "$$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }; \
	if [[ -x $(PY) ]] && ! ok $(PY); then \
	  echo "$(VENV) is broken or older than Python 3.11: recreating it"; rm -rf $(VENV); fi; \
	if [[ ! -x $(PY) ]]; then \
	  python="$(PYTHON)"; \
	  if [[ -z "$$python" ]]; then \
	    for p in python3 python3.13 python3.12 python3.11; do \
	      if command -v "$$p" >/dev/null && ok "$$p"; then python=$$p; break; fi; done; fi; \
	  if [[ -z "$$python" ]] || ! ok "$$python"; then \
	    echo "error: no Python ≥ 3.11 found; install one or run: make PYTHON=/path/to/python3.11" >&2; \
	    exit 1; fi; \
	  echo "creating $(VENV) with $$("$$python" -c 'import sys; print(sys.executable, sys.version.split()[0])')"; \
	  "$$python" -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "error: '$$python -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; \
	    exit 1; }; fi
	$(PY) -m pip install --disable-pip-version-check --quiet -e '.[dev]' -e 'apps/video[test]'
	@touch $@

# The suite runs as two pytest sessions at once (tests/support/parts.py): the Kafka tests
# (marker kafka; the brokers start in that session only) and all the others, each on a core
# of its own — a Kafka test mostly waits (on a broker, a kill, a timeout). Each part's output
# is printed when it ends (its log, under TEST_LOGS, meanwhile; a progress line a minute);
# TEST_PARTS=kafka or TEST_PARTS=other runs one part.
TEST_PARTS ?=
TEST_LOGS  ?= .cache/test-parts
test: venv  ## start services, run all tests in two parts at once (soak tests cut to SOAK_SECONDS=20), stop services
	@$(call with_services, \
	  MILLSTREAM_SOAK_SECONDS=$${MILLSTREAM_SOAK_SECONDS:-$(SOAK_SECONDS)} \
	  $(PY) -m tests.support.parts --log-dir $(TEST_LOGS) $(TEST_PARTS) -- \
	    -q --durations=30 $(PYTEST_ARGS))

# The newest Python found (scripts/newest-python.sh: python3.N on PATH, pyenv's versions) gets
# a venv of its own; there the tests run that need no external service — Kafka, S3,
# PostgreSQL and browser tests skip (MILLSTREAM_NO_SERVICES=1), the soak tests stay in `make
# test`. Nothing runs when the newest Python is the one .venv already uses. Needing no
# service, they run in NEWEST_WORKERS processes (pytest-xdist, a test file per process at a
# time, so module fixtures are made once): 2, the cores CI has.
NEWEST_VENV := .venv-newest
NEWEST_WORKERS ?= 2
# The newest Python as $$python and its version as $$version; exits 0 (nothing to do) when
# .venv already uses that version.
define newest_python
	python=$$(bash scripts/newest-python.sh) || { \
	  echo "test-newest: no Python ≥ 3.11 found" >&2; exit 1; }; \
	minor() { "$$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }; \
	version=$$(minor "$$python"); \
	if [[ -x $(PY) && $$(minor $(PY)) == "$$version" ]]; then \
	  echo "test-newest: the newest Python here is $$version, which $(VENV) uses: nothing more to run"; \
	  exit 0; fi
endef

newest-venv:  ## create .venv-newest for test-newest (again when a pyproject.toml changed); .ci/run makes it beside .venv
	@$(newest_python); \
	stamp=$(NEWEST_VENV)/.installed-$$version; \
	if [[ ! -f $$stamp || pyproject.toml -nt $$stamp || apps/video/pyproject.toml -nt $$stamp ]]; then \
	  echo "creating $(NEWEST_VENV) with $$python ($$version)"; rm -rf $(NEWEST_VENV); \
	  "$$python" -m venv $(NEWEST_VENV); \
	  $(NEWEST_VENV)/bin/python -m pip install --disable-pip-version-check --quiet \
	    -e '.[dev]' -e 'apps/video[test]'; \
	  touch "$$stamp"; fi

test-newest: newest-venv  ## the tests that need no external service, on the newest python3.x found (in .venv-newest)
	@$(newest_python); \
	MILLSTREAM_NO_SERVICES=1 $(NEWEST_VENV)/bin/python -m pytest -q \
	  -n $(NEWEST_WORKERS) --dist loadfile \
	  -m 'not kafka and not kafka_cluster and not slow' --durations=10 $(PYTEST_ARGS)

demo: venv  ## the video site processing sample videos it generates, on the embedded log
	$(PY) -m videosite.demo

bench: venv  ## stream, service, files, tables, windows and video site benchmarks (record results in docs/internals/benchmarks.md)
	$(PY) bench/streams.py
	$(PY) bench/services.py
	$(PY) bench/files.py
	$(PY) bench/tables.py
	$(PY) bench/table_outputs.py
	$(PY) bench/windows.py
	$(PY) bench/video.py

# bench/peers.py runs in a venv of its own, .venv-bench, with the `bench` extra (Quix Streams,
# FastStream): Quix Streams 3.28 needs confluent-kafka below 2.13, and .venv keeps the newest
# for the tests. The broker is MILLSTREAM_KAFKA_BOOTSTRAP, else a one-node broker started for
# the run in a temporary directory and stopped after it. BENCH_PEERS_ARGS go to bench/peers.py
# (e.g. --quick, --json results.json).
BENCH_VENV       := .venv-bench
BENCH_STAMP      := $(BENCH_VENV)/.installed
BENCH_PEERS_ARGS ?=

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	@if [[ ! -x $(BENCH_VENV)/bin/python ]]; then \
	  echo "creating $(BENCH_VENV) with millstream[bench]"; $(PY) -m venv $(BENCH_VENV); fi
	$(BENCH_VENV)/bin/python -m pip install --disable-pip-version-check --quiet -e '.[bench]'
	@touch $@

bench-peers: $(BENCH_STAMP)  ## Quix Streams, FastStream, a hand-written loop and millstream side by side on Kafka (bench/peers.py)
	@if [[ -n "$${MILLSTREAM_KAFKA_BOOTSTRAP:-}" ]]; then \
	  $(BENCH_VENV)/bin/python bench/peers.py --kafka "$$MILLSTREAM_KAFKA_BOOTSTRAP" \
	    $(BENCH_PEERS_ARGS); \
	else \
	  dir=$$(mktemp -d "$${TMPDIR:-/tmp}/millstream-bench-kafka-XXXXXX"); \
	  trap '$(PY) -m tests.support.kafka_cluster stop --dir "'"$$dir"'" >/dev/null; \
	    rm -rf "'"$$dir"'"' EXIT; \
	  echo "no MILLSTREAM_KAFKA_BOOTSTRAP: starting a one-node Kafka broker in $$dir"; \
	  bootstrap=$$($(PY) -m tests.support.kafka_cluster start --nodes 1 --dir "$$dir" \
	    | tail -n 1); \
	  $(BENCH_VENV)/bin/python bench/peers.py --kafka "$$bootstrap" $(BENCH_PEERS_ARGS); \
	fi

# pytest exits 5 when a selection matches no test: not a failure here. The property tests
# (marker `property`) draw fresh examples from a seed printed first (HYPOTHESIS_SEED=N draws
# the same again); `millstream verify` runs VERIFY_SECONDS on the embedded log, one Kafka node
# and three Kafka nodes with broker kills (tests/verify/test_run.py).
HYPOTHESIS_SEED ?=
VERIFY_SECONDS  ?= 60
reliability: venv  ## crash/kill tests 50 rounds each, the Kafka broker kill 5 runs, property tests with a fresh seed, millstream verify for VERIFY_SECONDS per backend, then the soak tests at full length
	@$(call with_services, \
	  seed=$${HYPOTHESIS_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	  rerun="make reliability HYPOTHESIS_SEED=$$seed"; \
	  echo "property tests: hypothesis seed $$seed (to draw the same examples again: $$rerun)"; \
	  rc=0; MILLSTREAM_HYPOTHESIS_PROFILE=reliability $(PY) -m pytest tests apps/video/tests \
	    -q -m property --hypothesis-seed=$$seed --durations=10 $(PYTEST_ARGS) || rc=$$?; \
	  if [[ $$rc -ne 0 && $$rc -ne 5 ]]; then \
	    echo "property tests failed with hypothesis seed $$seed; rerun: $$rerun" >&2; \
	    exit $$rc; fi; \
	  rc=0; MILLSTREAM_VERIFY_SECONDS=$(VERIFY_SECONDS) $(PY) -m pytest tests/verify/test_run.py \
	    -q -k verify_passes --durations=10 $(PYTEST_ARGS) || rc=$$?; \
	  if [[ $$rc -ne 0 && $$rc -ne 5 ]]; then exit $$rc; fi; \
	  rc=0; MILLSTREAM_KILL_ROUNDS=50 $(PY) -m pytest tests/streams -q -m 'not slow' \
	    --durations=10 $(PYTEST_ARGS) || rc=$$?; \
	  if [[ $$rc -ne 0 && $$rc -ne 5 ]]; then exit $$rc; fi; \
	  rc=0; MILLSTREAM_KAFKA_FAULT_RUNS=5 $(PY) -m pytest tests/kafka/test_faults.py -q \
	    --durations=10 $(PYTEST_ARGS) || rc=$$?; \
	  if [[ $$rc -ne 0 && $$rc -ne 5 ]]; then exit $$rc; fi; \
	  rc=0; $(PY) -m pytest tests -q -m slow --durations=10 $(PYTEST_ARGS) || rc=$$?; \
	  if [[ $$rc -eq 5 ]]; then echo "no slow tests yet"; rc=0; fi; \
	  exit $$rc)

lint: venv  ## ruff and mypy --strict
	$(VENV)/bin/ruff check $(wildcard src tests bench scripts apps/video)
	$(VENV)/bin/mypy

docs: venv  ## regenerate docs/reference/cli.md and errors.md from the commands and error classes
	$(PY) scripts/cli_reference.py
	$(PY) scripts/errors_reference.py

clean:  ## remove the venv, caches and build output (keeps .millstream/, your data)
	rm -rf $(VENV) $(NEWEST_VENV) $(BENCH_VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 \
	  | xargs -0 rm -rf

# --- web assets: the console's and the video site's chart library (issues 14, 15) --------------
# uPlot draws the console's charts and the video page's views per hour. The build fetches the
# pinned release with npm (`npm pack`), checks its SHA-512 against the one pinned here and
# unpacks the minified script, its stylesheet and its licence into the static files of the
# console (src/millstream/console/static/vendor/) and of the video site (static/vendor/); not
# in git, the wheels take them as artifacts. `make demo` and `make test` fetch them when missing.
UPLOT_VERSION := 1.6.32
UPLOT_SHA512  := 2883159c6ebccefbb95d751b0b82d010f9e1c0ec41b8bc96d401eda66e882935c89a46cb824332fa369b8cb8122cc6ac36e186cd09bf7a9ded3a4c93c6989023
CONSOLE_VENDOR := src/millstream/console/static/vendor
VIDEO_VENDOR  := apps/video/src/videosite/web/static/vendor
UPLOT_STAMPS  := $(CONSOLE_VENDOR)/.uplot-$(UPLOT_VERSION) $(VIDEO_VENDOR)/.uplot-$(UPLOT_VERSION)

.PHONY: web-assets video-assets
web-assets: $(UPLOT_STAMPS)  ## fetch the console's and the video site's chart library (uPlot, from npm) into their static files
video-assets: web-assets

$(UPLOT_STAMPS) &:
	@command -v npm >/dev/null || { echo "error: npm is needed to fetch uPlot $(UPLOT_VERSION) for the console's and the video site's charts; on Debian/Ubuntu: apt-get install npm" >&2; exit 1; }
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && npm pack --silent "uplot@$(UPLOT_VERSION)" >/dev/null); \
	got=$$(sha512sum "$$tmp/uplot-$(UPLOT_VERSION).tgz" | cut -d' ' -f1); \
	if [[ "$$got" != "$(UPLOT_SHA512)" ]]; then \
	  echo "error: uplot-$(UPLOT_VERSION).tgz has SHA-512 $$got, not the pinned $(UPLOT_SHA512)" >&2; exit 1; fi; \
	tar -xzf "$$tmp/uplot-$(UPLOT_VERSION).tgz" -C "$$tmp" package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE; \
	for dir in $(CONSOLE_VENDOR) $(VIDEO_VENDOR); do \
	  mkdir -p $$dir; \
	  cp "$$tmp/package/dist/uPlot.iife.min.js" "$$tmp/package/dist/uPlot.min.css" $$dir/; \
	  cp "$$tmp/package/LICENSE" $$dir/uPlot.LICENSE; \
	  rm -f $$dir/.uplot-*; touch $$dir/.uplot-$(UPLOT_VERSION); done; \
	echo "fetched uPlot $(UPLOT_VERSION) into $(CONSOLE_VENDOR) and $(VIDEO_VENDOR)"

demo test test-newest: web-assets
