# sla-planner developer tasks. `make help` lists them.
.DEFAULT_GOAL := help
PYTHON ?= python

.PHONY: help install lint test test-compiled test-reference test-rust test-slow bench rust-dev profile precompile fuzz

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install: ## editable install with every extra (builds the Rust and Cython extensions), then precompile
	$(PYTHON) -m pip install -e '.[all]'
	$(MAKE) precompile

precompile: ## compile the simulator's numba kernels into numba's cache (the first replay loads them)
	$(PYTHON) -m sla_planner.sim.precompile

fuzz: ## 10**6 mutated FPM payloads through decode and batch ingest, native against the reference
	$(PYTHON) -m sla_planner.fpm_fuzz --payloads 1000000

lint: ## static checks: mypy on python/, cargo fmt --check, cargo clippy with warnings as errors
	$(PYTHON) -m mypy python/sla_planner
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

test: test-rust test-compiled test-reference ## the whole suite: cargo tests, then pytest with compiled kernels, then with the numpy references

test-rust: ## Rust core unit tests
	cargo test -q -p sla-planner-core

test-compiled: ## pytest with the compiled kernels
	$(PYTHON) -m pytest -q -m 'not slow'

test-reference: ## pytest with SLA_PLANNER_NO_EXTENSIONS=1 (numpy/Python references everywhere)
	SLA_PLANNER_NO_EXTENSIONS=1 $(PYTHON) -m pytest -q -m 'not slow' -p no:cacheprovider

test-slow: ## the long tests (45-minute replays), a separate CI step
	$(PYTHON) -m pytest -q -m slow -p no:cacheprovider

bench: ## every `sla-planner bench` case (same definitions) plus the replay/live/metrics benches, in one run
	$(PYTHON) -m pytest benches -o python_files='bench_*.py' --benchmark-only --benchmark-columns=median,ops -q -s -p no:cacheprovider

rust-dev: ## fast Rust loop: build the PyO3 module with maturin into the current environment
	cd rust/py && maturin develop --release

profile: ## regenerate the bundled example profile from the analytic engine model
	$(PYTHON) scripts/generate_example_profile.py
