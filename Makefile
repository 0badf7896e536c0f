# The two commands of the README:
#   make demo   set everything up and run the main job on the embedded default
#   make test   set everything up and run the tests (make test-fast: a two-minute subset)
# and `make check` (ruff and mypy), which CI runs before the tests.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install -q -c constraints.txt

.PHONY: setup check test test-fast demo bench

setup:
	@# Debian packages: the Fashion-MNIST data set, and the browser the web pages are tested in
	@# (chromium with its chromedriver; Selenium never downloads one).
	@if { [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -x /usr/bin/chromedriver ]; } && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist chromium chromium-driver >/dev/null; fi
	@# torch first, from the constraints file: nothing may pull a newer build with CUDA.
	$(PIP) torch
	@# A strict editable install: a tree of links laid out as the wheel is (build/__editable__.*),
	@# which type checkers and IDEs follow, where the default one maps the folders with an import
	@# hook they cannot. Its one rule: a new module appears after `make setup` again.
	$(PIP) -e ".[test]" --config-settings editable_mode=strict
	@# The example architecture plugin, which the tests publish, train and assemble. --no-deps:
	@# it depends on partsbin, and pip must take the one just installed, not fetch another.
	$(PIP) --no-deps -e examples/partsbin-example-arch

check: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	.ci/typecheck

test: setup
	$(PYTHON) -m pytest

# A subset of about two minutes (tests/conftest.py's FAST_MODULES): the registry's API,
# paths, trust and errors against real PostgreSQL and S3, the client, the shared core.
test-fast: setup
	$(PYTHON) -m pytest -m "not slow"

demo: setup
	$(PYTHON) -m partsbin demo

bench: setup
	$(PYTHON) bench/registry_bench.py
	$(PYTHON) bench/web_bench.py
